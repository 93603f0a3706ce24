"""AST -> checked AST: names, dims, element types, params and arity, with spanned errors.

Helpers (`def`) and loss-calls-loss are inlined here, so shapes flow through them and every
later stage sees one expression tree per loss.
"""

from __future__ import annotations

from dataclasses import replace

from lossdsl import ast, builtins
from lossdsl.checked import (
    BOOL,
    ELEMENT_TYPES,
    SCALAR,
    CheckedLoss,
    Constant,
    InputInfo,
    InputRef,
    Kind,
    Node,
    NotConstant,
    ParamInfo,
    ParamRef,
    Type,
    evaluate_constant,
)
from lossdsl.errors import (
    ElementTypeError,
    LossDSLError,
    Note,
    ParamError,
    ResolveError,
    ShapeError,
    Span,
)
from lossdsl.loader import ModuleScope
from lossdsl.resolve_expr import ExprChecker, Scope, close_matches


def resolve(scope: ModuleScope, name: str | None = None) -> CheckedLoss:
    """Check one loss of a module (the only one, or the one named)."""
    own = [n for n in scope.own if n in scope.losses]
    if name is None:
        if not own:
            raise ResolveError(
                None if not scope.module.decls else scope.module.decls[0].span,
                f"`{scope.module.source.name}` declares no `loss`",
                "add `loss name(input: Type[dims]) { ... return expr }`",
            )
        name = own[0] if len(own) == 1 else own[-1]
    if name not in scope.losses:
        raise ResolveError(
            None,
            f"`{scope.module.source.name}` has no loss `{name}`",
            f"choose one of: {', '.join(own) or '(none)'}",
        )
    decl, owner = scope.losses[name]
    return LossChecker(owner, decl).check()


def resolve_all(scope: ModuleScope) -> list[CheckedLoss]:
    """Check every loss the file declares itself (what `lossdsl check` does)."""
    return [resolve(scope, n) for n in scope.own if n in scope.losses]


class LossChecker(ExprChecker):
    """Checks one top-level loss: its declarations, then its body as one expression."""

    def __init__(self, module: ModuleScope, decl: ast.LossDecl) -> None:
        self.decl = decl
        self.module = module
        self.inputs = declare_inputs(decl)
        order: list[str] = []
        for info in self.inputs:
            order.extend(d for d in (*info.dims, info.of or "") if d and d not in order)
        super().__init__(order)
        self.params: list[ParamInfo] = []
        self.names: dict[int, str] = {}

    def check(self) -> CheckedLoss:
        values: dict[str, tuple[Node, Span]] = {}
        for info in self.inputs:
            kind = Kind.INDEX if info.elem == "Index" else Kind.VALUE
            node = InputRef(info.name, Type(kind, info.dims, info.elem, info.of), info.span)
            values[info.name] = (node, info.span)
        scope = Scope(values, {d: d for d in self.order}, self.module, (self.decl.name.name,))
        output = self.run_body(self.decl, scope, top=True)
        return CheckedLoss(
            name=self.decl.name.name,
            doc=self.decl.doc,
            inputs=self.inputs,
            params=tuple(self.params),
            dims=tuple(self.order),
            output=output,
            span=self.decl.span,
            names=self.names,
        )

    # -- statements --------------------------------------------------------------------------

    def run_body(self, decl: ast.LossDecl, scope: Scope, top: bool) -> Node:
        """Elaborate a loss body; ``top`` is False when inlining a loss into another."""
        result: Node | None = None
        for stmt in decl.body:
            if result is not None:
                raise ResolveError(
                    stmt.span,
                    "statement after `return`",
                    "`return` must be the last statement of a loss",
                )
            if isinstance(stmt, ast.ReturnStmt):
                result = self.value(self.expr(stmt.value, scope), stmt.value)
            elif isinstance(stmt, ast.ParamStmt):
                if top:
                    self.declare_param(stmt, scope)
                elif stmt.name.name not in scope.values:  # bound by the caller's kwargs
                    raise ResolveError(stmt.span, "internal: unbound param of an inlined loss")
            elif isinstance(stmt, ast.ConstStmt):
                self.bind(scope, stmt.name, self.constant(stmt.value, scope, "a `const`"))
            else:
                self.bind_stmt(stmt, scope, top)
        if result is None:
            raise ResolveError(
                decl.name.span,
                f"loss `{decl.name.name}` has no `return`",
                "end the body with `return expr`",
            )
        return result

    def bind_stmt(self, stmt: ast.BindStmt, scope: Scope, top: bool) -> None:
        node = self.expr(stmt.value, scope)
        if len(stmt.targets) == 1:
            self.bind(scope, stmt.targets[0], node)
            if top:
                self.names.setdefault(id(node), stmt.targets[0].name)
            return
        for position, (target, part) in enumerate(
            zip(stmt.targets, self.unpack(node, stmt, len(stmt.targets)), strict=True)
        ):
            self.bind(scope, target, part)
            if top:
                self.names.setdefault(id(part), f"{target.name}")
            del position

    def bind(self, scope: Scope, ident: ast.Ident, node: Node) -> None:
        check_name(ident)
        if ident.name in scope.values:
            raise ResolveError(
                ident.span,
                f"`{ident.name}` is already bound",
                "each name is bound once; choose a new name",
                (Note(scope.values[ident.name][1], "first bound here"),),
            )
        scope.values[ident.name] = (node, ident.span)

    def constant(self, expr: ast.Expr, scope: Scope, what: str) -> Constant:
        node = self.expr(expr, scope)
        try:
            value = evaluate_constant(node)
        except NotConstant:
            raise ResolveError(
                expr.span, f"{what} must be a number", "use only numbers and other consts"
            ) from None
        except (ArithmeticError, ValueError) as exc:
            raise ResolveError(
                expr.span, f"{what} cannot be evaluated: {exc}", "fix the arithmetic"
            ) from None
        return Constant(value, SCALAR, expr.span)

    def declare_param(self, stmt: ast.ParamStmt, scope: Scope) -> None:
        elem = check_elem(stmt.type)
        if elem in ("Index", "Binary") or stmt.type.of is not None:
            raise ElementTypeError(
                stmt.type.span,
                f"a param cannot be of type `{elem}`",
                "params are numbers: use Real, Positive, NonNegative or Prob",
            )
        dims = self.param_dims(stmt)
        node = ParamRef(stmt.name.name, Type(Kind.VALUE, dims, elem), stmt.span)
        self.bind(scope, stmt.name, node)
        default = None
        if stmt.default is not None:
            default = self.constant(stmt.default, scope, f"the default of param `{stmt.name.name}`")
        condition = None
        if stmt.condition is not None:
            condition = self.expr(stmt.condition, scope)
            if condition.type.kind is not Kind.BOOL:
                raise ElementTypeError(
                    stmt.condition.span,
                    "a `where` condition must be a comparison",
                    f"e.g. `where {stmt.name.name} >= 0`",
                )
        info = ParamInfo(
            name=stmt.name.name,
            elem=elem,
            dims=dims,
            default=None if default is None else default.value,
            condition=condition,
            condition_text=stmt.condition.span.text if stmt.condition else "",
            span=stmt.span,
        )
        if default is not None:
            validate_param(info, default.value, stmt.default.span if stmt.default else stmt.span)
        self.params.append(info)

    def param_dims(self, stmt: ast.ParamStmt) -> tuple[str, ...]:
        for dim in stmt.type.dims:
            if dim.name not in self.order:
                raise ShapeError(
                    dim.span,
                    f"dim `{dim.name}` of param `{stmt.name.name}` is not a dim of any input",
                    "a param's dims must come from the inputs, which fix their sizes",
                )
        return self.union(tuple(d.name for d in stmt.type.dims))

    def unpack(self, node: Node, stmt: ast.BindStmt, count: int) -> list[Node]:
        from lossdsl.checked import Component

        literal = [d for d in node.type.dims if d.isdigit() and int(d) == count]
        if not literal:
            raise ShapeError(
                stmt.value.span,
                f"unpacking {count} names needs a literal dim of size {count}, but "
                f"`{stmt.value.span.text}` is {node.type.describe()}",
                f"declare the input with a trailing literal dim, e.g. `Real[N, {count}]`",
            )
        dim = literal[-1]
        rest = tuple(d for d in node.type.dims if d != dim)
        part_type = replace(node.type, dims=rest)
        return [Component(node, dim, k, part_type, t.span) for k, t in enumerate(stmt.targets)]

    # -- loss calls (used by ExprChecker.call) -----------------------------------------------

    def inline_loss(
        self, call: ast.CallExpr, decl: ast.LossDecl, owner: ModuleScope, scope: Scope
    ) -> Node:
        name = decl.name.name
        if name in scope.stack:
            raise ResolveError(call.span, f"loss `{name}` calls itself", "losses cannot recurse")
        inputs = declare_inputs(decl)
        if len(call.args) != len(inputs):
            raise self.arity(call, f"loss `{name}`", len(inputs), decl.name.span)
        args = [self.expr(a, scope) for a in call.args]
        dims = self.unify(call, inputs, args)
        values: dict[str, tuple[Node, Span]] = {
            info.name: (arg, info.span) for info, arg in zip(inputs, args, strict=True)
        }
        params = {s.name.name: s for s in decl.body if isinstance(s, ast.ParamStmt)}
        for kwarg in call.kwargs:
            if kwarg.name.name not in params:
                raise ResolveError(
                    kwarg.name.span,
                    f"loss `{name}` has no param `{kwarg.name.name}`",
                    f"its params are: {', '.join(params) or '(none)'}",
                )
            values[kwarg.name.name] = (self.expr(kwarg.value, scope), kwarg.span)
        callee = Scope(values, dims, owner, (*scope.stack, name))
        for pname, stmt in params.items():
            if pname not in values:
                if stmt.default is None:
                    raise ResolveError(
                        call.span,
                        f"loss `{name}` needs a value for its param `{pname}`",
                        f"pass it by keyword: `{name}(..., {pname}=...)`",
                    )
                values[pname] = (self.constant(stmt.default, callee, "a default"), stmt.span)
        return self.run_body(decl, callee, top=False)

    def unify(
        self, call: ast.CallExpr, inputs: tuple[InputInfo, ...], args: list[Node]
    ) -> dict[str, str]:
        """Map the callee's dim names to this loss's dims, from the arguments' dims."""
        mapping: dict[str, str] = {}
        for info, arg, expr in zip(inputs, args, call.args, strict=True):
            want = Kind.INDEX if info.elem == "Index" else Kind.VALUE
            if want is Kind.INDEX and arg.type.kind is not Kind.INDEX:
                raise ElementTypeError(
                    expr.span,
                    f"input `{info.name}` is an `Index`, but this argument is {arg.type.describe()}",
                    "pass an `Index` input of this loss",
                )
            have = list(arg.type.dims)
            if len(have) != len(info.dims):
                raise ShapeError(
                    expr.span,
                    f"input `{info.name}` is declared [{', '.join(info.dims)}], but this argument "
                    f"has dims [{', '.join(have)}]",
                    "pass an argument with the same number of dims",
                )
            # Same names pair first; the rest pair in order.
            pairs = {d: d for d in info.dims if d in have}
            rest = [d for d in have if d not in pairs.values()]
            pairs.update(zip([d for d in info.dims if d not in pairs], rest, strict=True))
            if info.of is not None and arg.type.of is not None:
                pairs[info.of] = arg.type.of
            for theirs, ours in pairs.items():
                if theirs.isdigit() != ours.isdigit() or (theirs.isdigit() and theirs != ours):
                    raise ShapeError(
                        expr.span,
                        f"dim `{theirs}` of input `{info.name}` cannot take dim `{ours}`",
                        "literal dims must match exactly",
                    )
                if mapping.setdefault(theirs, ours) != ours:
                    raise ShapeError(
                        expr.span,
                        f"dim `{theirs}` would be both `{mapping[theirs]}` and `{ours}`",
                        "arguments that share a dim in the callee must share it here",
                    )
        return mapping


def check_name(ident: ast.Ident) -> None:
    if ident.name in builtins.RESERVED:
        raise ResolveError(ident.span, f"`{ident.name}` is a reserved word", "choose another name")


def check_elem(type_ref: ast.TypeRef) -> str:
    elem = type_ref.elem.name
    if elem not in ELEMENT_TYPES:
        hint = close_matches(elem, ELEMENT_TYPES)
        raise ElementTypeError(
            type_ref.elem.span,
            f"unknown element type `{elem}`",
            hint or f"use one of: {', '.join(ELEMENT_TYPES)}",
        )
    return elem


def declare_inputs(decl: ast.LossDecl) -> tuple[InputInfo, ...]:
    seen: dict[str, Span] = {}
    infos = []
    for item in decl.inputs:
        check_name(item.name)
        if item.name.name in seen:
            raise ResolveError(
                item.name.span,
                f"input `{item.name.name}` is declared twice",
                "rename one of them",
                (Note(seen[item.name.name], "first declared here"),),
            )
        seen[item.name.name] = item.name.span
        elem = check_elem(item.type)
        if elem == "Index" and item.type.of is None:
            raise ElementTypeError(
                item.type.span,
                f"`Index` input `{item.name.name}` needs the dim it indexes",
                f"write e.g. `{item.name.name}: Index[N] of C`",
            )
        if elem != "Index" and item.type.of is not None:
            raise ElementTypeError(
                item.type.of.span, "only an `Index` takes `of`", "remove `of ...`"
            )
        if item.type.of is not None and item.type.of.literal:
            raise ShapeError(item.type.of.span, "`of` needs a dim name", "e.g. `of C`")
        names = [d.name for d in item.type.dims]
        for dim in item.type.dims:
            if names.count(dim.name) > 1:
                raise ShapeError(
                    dim.span,
                    f"dim `{dim.name}` appears twice in `{item.name.name}`",
                    "give each axis its own dim name",
                )
        of = item.type.of.name if item.type.of else None
        infos.append(InputInfo(item.name.name, elem, tuple(names), of, item.span))
    known = {d for info in infos for d in info.dims}
    for info, item in zip(infos, decl.inputs, strict=True):
        if info.of is not None and info.of not in known and item.type.of is not None:
            raise ShapeError(
                item.type.of.span,
                f"dim `{info.of}` is not a dim of any input, so its size is unknown",
                f"declare an input with dim `{info.of}` (e.g. `logits: Real[N, {info.of}]`)",
            )
    return tuple(infos)


def validate_param(info: ParamInfo, value: float, span: Span) -> None:
    """Check a param value against its element type and its `where` condition."""
    bounds = {
        "Positive": (value > 0, "> 0"),
        "NonNegative": (value >= 0, ">= 0"),
        "Prob": (0 <= value <= 1, "in [0, 1]"),
    }
    ok, rule = bounds.get(info.elem, (value == value, "a number"))
    if not ok:
        raise ParamError(
            span,
            f"param `{info.name}` = {value:g} is not {rule} (its type is `{info.elem}`)",
            f"give `{info.name}` a value {rule}",
        )
    if info.condition is None:
        return
    try:
        holds = evaluate_constant(info.condition, {info.name: value})
    except (NotConstant, ArithmeticError, ValueError) as exc:
        raise LossDSLError(span, f"cannot evaluate `where {info.condition_text}`: {exc}") from None
    if not holds:
        raise ParamError(
            span,
            f"param `{info.name}` = {value:g} violates `where {info.condition_text}`",
            f"give `{info.name}` a value with {info.condition_text}",
        )


__all__ = ["BOOL", "Scope", "resolve", "resolve_all", "validate_param"]
