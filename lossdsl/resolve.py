"""AST -> checked AST: names, dims, element types, params and arity, with spanned errors.

Helpers (`def`) and loss-calls-loss are inlined here, so shapes flow through them and every
later stage sees one expression tree per loss.
"""

from __future__ import annotations

from dataclasses import replace

from lossdsl import ast
from lossdsl.checked import (
    BOOL,
    SCALAR,
    CheckedLoss,
    Component,
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
from lossdsl.errors import ElementTypeError, Note, ResolveError, ShapeError, Span
from lossdsl.loader import ModuleScope
from lossdsl.resolve_decl import (
    check_condition,
    check_elem,
    check_name,
    constant_value,
    declare_inputs,
    validate_param,
)
from lossdsl.resolve_expr import ExprChecker, Scope, check_inline_depth, close_matches


def resolve(scope: ModuleScope, name: str | None = None) -> CheckedLoss:
    """Check one loss of a module: the one named, else the last one the file declares."""
    own = [n for n in scope.own if n in scope.losses]
    whole = Span.whole_file(scope.module.source)
    if name is None:
        if not own:
            raise ResolveError(
                whole,
                f"`{scope.module.source.name}` declares no `loss`",
                "add `loss name(input: Type[dims]) { ... return expr }`",
            )
        name = own[-1]
    if name not in scope.losses:
        hint = close_matches(name, scope.losses)
        raise ResolveError(
            whole,
            f"`{scope.module.source.name}` has no loss `{name}`",
            hint or f"choose one of: {', '.join(own) or '(none)'}",
        )
    decl, owner = scope.losses[name]
    return LossChecker(owner, decl).check()


def resolve_all(scope: ModuleScope) -> list[CheckedLoss]:
    """Check every loss the file declares itself (what `lossdsl check` does). A file of
    `def` helpers alone is a library, and has none; a file declaring nothing is an error."""
    if not scope.own:
        raise ResolveError(
            Span.whole_file(scope.module.source),
            f"`{scope.module.source.name}` declares no `loss` and no `def`",
            "add `loss name(input: Type[dims]) { ... return expr }`",
        )
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
        returns = [s for s in self.decl.body if isinstance(s, ast.ReturnStmt)]
        self.check_size(output, returns[-1].value.span if returns else self.decl.span)
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
                else:
                    self.inlined_param(stmt, decl, scope)
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
        parts = self.unpack(node, stmt, len(stmt.targets))
        for target, part in zip(stmt.targets, parts, strict=True):
            self.bind(scope, target, part)
            if top:
                self.names.setdefault(id(part), target.name)

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
        node = self.value(self.expr(expr, scope), expr)
        return Constant(constant_value(node, what, expr.span), SCALAR, expr.span)

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
        condition = self.param_condition(stmt, scope)
        if condition is not None and stmt.condition is not None:
            check_condition(stmt.name.name, condition, stmt.condition)
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

    def param_condition(self, stmt: ast.ParamStmt, scope: Scope) -> Node | None:
        if stmt.condition is None:
            return None
        condition = self.expr(stmt.condition, scope)
        if condition.type.kind is not Kind.BOOL:
            raise ElementTypeError(
                stmt.condition.span,
                "a `where` condition must be a comparison",
                f"e.g. `where {stmt.name.name} >= 0`",
            )
        return condition

    def inlined_param(self, stmt: ast.ParamStmt, decl: ast.LossDecl, scope: Scope) -> None:
        """A param of a loss called from another: its keyword argument (checked against the
        param's dims, type and `where` when it is a number) or its default."""
        name, loss = stmt.name.name, decl.name.name
        inputs = {i.name.name: i.name.span for i in decl.inputs}
        if name in inputs:  # the callee's own check would say so; it may never have run
            raise ResolveError(
                stmt.name.span,
                f"`{name}` is already bound",
                "each name is bound once; choose a new name",
                (Note(inputs[name], "first bound here"),),
            )
        if name not in scope.values:
            if stmt.default is None:
                raise ResolveError(
                    scope.call_sites[-1],
                    f"loss `{loss}` needs a value for its param `{name}`",
                    f"pass it by keyword: `{loss}(..., {name}=...)`",
                    (Note(stmt.span, "declared here"),),
                )
            default = self.constant(stmt.default, scope, f"the default of param `{name}`")
            scope.values[name] = (default, stmt.span)
        node, span = scope.values[name]
        allowed = [scope.dims.get(d.name, d.name) for d in stmt.type.dims]
        for dim in node.type.dims:
            if dim not in allowed:
                raise ShapeError(
                    span,
                    f"param `{name}` of loss `{loss}` has dims [{', '.join(allowed)}] here, "
                    f"but the value passed has dim `{dim}`",
                    "pass a scalar or a value with the param's dims",
                    (Note(stmt.span, "declared here"),),
                )
        try:
            value = evaluate_constant(node)
        except (NotConstant, ArithmeticError, ValueError):
            return  # not a number here: its own type and conditions were checked where declared
        condition = self.param_condition(stmt, scope)
        text = stmt.condition.span.text if stmt.condition else ""
        info = ParamInfo(name, check_elem(stmt.type), (), None, condition, text, stmt.span)
        validate_param(info, value, span)

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
        check_inline_depth(call, scope)
        inputs = declare_inputs(decl)
        if len(call.args) != len(inputs):
            raise self.arity(call, f"loss `{name}`", len(inputs), decl.name.span)
        args = [
            self.argument(call, info, a, scope) for info, a in zip(inputs, call.args, strict=True)
        ]
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
            value = self.value(self.expr(kwarg.value, scope), kwarg.value)
            values[kwarg.name.name] = (value, kwarg.span)
        callee = Scope(values, dims, owner, (*scope.stack, name), (*scope.call_sites, call.span))
        return self.run_body(decl, callee, top=False)

    def argument(self, call: ast.CallExpr, info: InputInfo, expr: ast.Expr, scope: Scope) -> Node:
        node = self.expr(expr, scope)
        if info.elem == "Index":
            if node.type.kind is not Kind.INDEX:
                raise ElementTypeError(
                    expr.span,
                    f"input `{info.name}` of loss `{call.name.name}` is an `Index`, but this "
                    f"argument is {node.type.describe()}",
                    "pass an `Index` input of this loss",
                )
            return node
        if node.type.kind is Kind.INDEX:
            raise ElementTypeError(
                expr.span,
                f"input `{info.name}` of loss `{call.name.name}` is `{info.elem}`, but this "
                "argument is an `Index`",
                "pass numbers, or `onehot(t)` for a one-hot encoding of an `Index`",
            )
        return self.value(node, expr)

    def unify(
        self, call: ast.CallExpr, inputs: tuple[InputInfo, ...], args: list[Node]
    ) -> dict[str, str]:
        """Map the callee's dim names to this loss's dims, from the arguments' dims."""
        mapping: dict[str, str] = {}
        for info, arg, expr in zip(inputs, args, call.args, strict=True):
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


__all__ = ["BOOL", "Scope", "resolve", "resolve_all", "validate_param"]
