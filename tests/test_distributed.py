"""Scale-out on existing engines (issue #7, docs/scaling.md): a compiled loss trains under
``torch.distributed`` DDP (gloo, two processes on this machine) to the same parameters as one
process on the same global batch, and a JAX loss on a batch sharded over two host devices
(``NamedSharding`` + ``jit``) gives the same value and gradients as unsharded.

Why the DDP numbers match: DDP *averages* gradients over ranks. With a ``mean`` loss each rank
computes the mean over its B/W examples, so the averaged gradient is
(1/W) * sum_r (W/B) * sum_{i in r} grad l_i = (1/B) * sum_i grad l_i, the gradient of the mean
over the global batch. A ``sum`` loss gets (1/W) * the global sum's gradient: the test checks
that too, against one process minimising the global sum divided by W.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

import lossdsl  # noqa: E402
from tests.conftest import ROOT  # noqa: E402

WORLD = 2
BATCH, FEATURES, CLASSES, STEPS, LR = 8, 5, 3, 3, 0.5
LOSSES = {
    "mean": """loss ce(logits: Real[N, C], target: Index[N] of C) {
    return mean(logsumexp[C](logits) - logits[target])
}""",
    "sum": """loss ce(logits: Real[N, C], target: Index[N] of C) {
    return sum(logsumexp[C](logits) - logits[target])
}""",
}


def data() -> tuple[Any, Any]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, FEATURES, generator=gen, dtype=torch.float64)
    y = torch.randint(0, CLASSES, (BATCH,), generator=gen)
    return x, y


def model() -> Any:
    torch.manual_seed(1)
    return torch.nn.Linear(FEATURES, CLASSES).double()


def train(net: Any, loss: Any, x: Any, y: Any, scale: float) -> None:
    opt = torch.optim.SGD(net.parameters(), lr=LR)
    for _ in range(STEPS):
        opt.zero_grad()
        (loss(net(x), y) * scale).backward()
        opt.step()


def _worker(rank: int, port: int, kind: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        x, y = data()
        shard = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
        net = torch.nn.parallel.DistributedDataParallel(model())
        loss = lossdsl.parse(LOSSES[kind]).compile("torch")
        train(net, loss, x[shard], y[shard], 1.0)
        if rank == 0:
            torch.save(net.module.state_dict(), out)
        dist.barrier()  # leave together: a rank gone while gloo still talks to it aborts
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("kind", ["mean", "sum"])
def test_ddp_with_two_gloo_processes_matches_one_process(kind: str, tmp_path: Path) -> None:
    out = tmp_path / "ddp.pt"
    mp.spawn(_worker, args=(free_port(), kind, str(out)), nprocs=WORLD, join=True)
    ddp = torch.load(out)

    x, y = data()
    single = model()
    loss = lossdsl.parse(LOSSES[kind]).compile("torch")
    # mean: the global mean as it is; sum: DDP's average over ranks divides it by WORLD
    train(single, loss, x, y, 1.0 if kind == "mean" else 1.0 / WORLD)
    for name, value in single.state_dict().items():
        torch.testing.assert_close(ddp[name], value, rtol=1e-12, atol=1e-12)
    assert not torch.equal(ddp["weight"], model().weight.detach())  # it did train


JAX_SCRIPT = """
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import lossdsl

assert jax.device_count() == 2, jax.devices()
mesh = Mesh(np.array(jax.devices()), ("batch",))
rows, cols = NamedSharding(mesh, P("batch", None)), NamedSharding(mesh, P("batch"))
rng = np.random.default_rng(0)
logits = rng.normal(size=(8, 3))
target = rng.integers(0, 3, size=8)
w = rng.normal(size=(5, 3))
x = rng.normal(size=(8, 5))

ce = lossdsl.parse(MEAN).compile("jax")
per_example = lossdsl.parse(PER_EXAMPLE).compile("jax")

def model_loss(w, x, target):
    return ce(x @ w, target)

step = jax.jit(jax.value_and_grad(ce))
v1, g1 = step(jnp.asarray(logits), jnp.asarray(target))
v2, g2 = step(jax.device_put(logits, rows), jax.device_put(target, cols))
assert len(g2.sharding.device_set) == 2, g2.sharding  # the gradient stays sharded
np.testing.assert_allclose(v2, v1, rtol=1e-12)
np.testing.assert_allclose(g2, g1, rtol=1e-12, atol=1e-15)

train = jax.jit(jax.value_and_grad(model_loss))
v1, gw1 = train(jnp.asarray(w), jnp.asarray(x), jnp.asarray(target))
replicated = NamedSharding(mesh, P())
sharded = (jax.device_put(w, replicated), jax.device_put(x, rows), jax.device_put(target, cols))
v2, gw2 = train(*sharded)
np.testing.assert_allclose(v2, v1, rtol=1e-12)
np.testing.assert_allclose(gw2, gw1, rtol=1e-12, atol=1e-15)

out = jax.jit(per_example)(jax.device_put(logits, rows), jax.device_put(target, cols))
assert len(out.sharding.device_set) == 2
np.testing.assert_allclose(out, per_example(logits, target), rtol=1e-12)

# shard_map: the function sees one shard, so `mean` is the shard's mean; pmean makes it global.
def local(l, t):
    return jax.lax.pmean(ce(l, t), "batch")

specs = dict(in_specs=(P("batch"), P("batch")), out_specs=P())
global_mean = jax.jit(jax.shard_map(local, mesh=mesh, **specs))
unsharded = step(jnp.asarray(logits), jnp.asarray(target))[0]
np.testing.assert_allclose(global_mean(jnp.asarray(logits), jnp.asarray(target)), unsharded)
print("sharded ok")
"""


def test_jax_batch_sharded_over_two_host_devices_matches_unsharded(tmp_path: Path) -> None:
    script = tmp_path / "sharded.py"
    script.write_text(
        f"MEAN = {LOSSES['mean']!r}\n"
        "PER_EXAMPLE = 'loss pe(logits: Real[N, C], target: Index[N] of C) "
        "{ return logsumexp[C](logits) - logits[target] }'\n" + textwrap.dedent(JAX_SCRIPT)
    )
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",  # before jax initialises
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": str(ROOT),
    }
    run = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "sharded ok" in run.stdout


def test_the_arithmetic_of_mean_under_ddp() -> None:
    """The identity the DDP test relies on, on plain numbers: averaging per-rank means of equal
    shards is the global mean; averaging per-rank sums is the global sum / world size."""
    values = np.arange(8.0)
    shards = values.reshape(WORLD, -1)
    assert np.mean([s.mean() for s in shards]) == values.mean()
    assert np.mean([s.sum() for s in shards]) == values.sum() / WORLD
