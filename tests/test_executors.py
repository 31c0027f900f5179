"""Executors: the same grid through Ray and through Slurm job arrays (submitit's local executor)
gives the local executor's numbers, and so do local worker processes; a killed worker costs its
cell only (a local one: what ran beside it runs again, alone); caches shared by concurrent processes hold one valid entry per key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bench.errors import ConfigError
from bench.executors.local import MAX_AUTO_WORKERS, auto_workers
from bench.records import read_records
from tests.conftest import TINY_DECODER

DECODER = [a for key, value in TINY_DECODER["decoder"].items() for a in ("--set", f"decoder.{key}={value}")]


def _args(tmp_path, encoder, data, out, methods="clipre,nonoise,decap", split="coco", decoder=True):
    return ["run", "--methods", methods, "--split", split, "--out", str(tmp_path / out), "--cache-dir", str(tmp_path / "cache"),
            "--encoder", encoder, "--data-root", str(data), "--no-report", *(DECODER if decoder else [])]


def _metrics(folder: Path) -> dict:
    return {(r.method, r.split, r.seed): r.metrics for r in read_records(folder).records}


def _assert_same_numbers(local: Path, other: Path, cells: int | None = None) -> None:
    """``other``'s run has every cell of ``local``'s with the same metrics (to 1e-6), and says of
    each (method, seed) whether its fit was reused just as the in-process run says it, the first
    cell of each fit trained there carrying the fit's time."""
    expected, got = _metrics(local), _metrics(other)
    assert expected.keys() == got.keys() and (cells is None or len(expected) == cells)
    for cell, metrics in expected.items():
        assert got[cell] == pytest.approx(metrics, abs=1e-6), cell
    reused = {(r.method, r.seed): r.fit_reused for r in read_records(local).records}
    assert {(r.method, r.seed): r.fit_reused for r in read_records(other).records} == reused
    trained = [r for r in read_records(other).records if not r.fit_reused and r.method != "clipre"]
    assert trained and all(r.timings["fit"] > 0 for r in trained)  # the fit task's time, on its first cell


@pytest.fixture
def single_thread(monkeypatch):
    """The local run computes with one torch thread, as each worker task does (``--threads 1``)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def ray_session():
    import ray  # a test dependency (pip install -e '.[test]')

    yield ray
    if ray.is_initialized():
        ray.shutdown()


@pytest.mark.parametrize("argv, fragment", [
    (["--executor", "nope"], "executor.kind must be one of local, ray, slurm"),
    (["--address", "auto"], "--address is an option of the ray executor, not of local"),
    (["--executor", "ray", "--partition", "gpu"], "--partition is an option of the slurm executor, not of ray"),
    (["--executor", "slurm"], "needs --partition"),
    (["--executor", "slurm", "--partition", "gpu"], "no Slurm here"),
    (["--cpus-per-task", "2"], "is an option of the ray and slurm executor"),
    (["--workers", "-1"], "--threads and --workers >= 0"),
    (["--executor", "ray", "--workers", "2"], "--workers is an option of the local executor, not of ray"),
])
def test_executor_bad_input(run_cli, tmp_path, argv, fragment, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no sbatch
    code, _, err = run_cli("run", "--methods", "clipre", "--split", "coco", "--out", str(tmp_path / "r"),
                           "--cache-dir", str(tmp_path / "c"), *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1 and fragment in err, err


def test_ray_missing_is_named(run_cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    code, _, err = run_cli("run", "--methods", "clipre", "--split", "coco", "--out", str(tmp_path / "r"), "--executor", "ray")
    assert code == 2 and "pip install -e '.[ray]'" in err


def test_a_ray_address_that_does_not_answer(run_cli, tmp_path, ray_session):
    code, _, err = run_cli("run", "--methods", "clipre", "--split", "coco", "--out", str(tmp_path / "r"), "--executor", "ray",
                           "--address", "127.0.0.1:1")
    assert code == 2 and "cannot reach a Ray cluster at 127.0.0.1:1" in err and len(err.strip().splitlines()) == 1


def test_ray_gives_the_local_numbers(run_cli, tmp_path, karpathy_root, tiny_clip_folder, single_thread, ray_session):
    code, _, err = run_cli(*_args(tmp_path, tiny_clip_folder, karpathy_root, "local"))
    assert code == 0, err
    ray_session.init(num_cpus=2, include_dashboard=False, logging_level="ERROR",
                     runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "BENCH_PROGRESS": "0"}})
    code, _, err = run_cli(*_args(tmp_path, tiny_clip_folder, karpathy_root, "ray"), "--executor", "ray", "--threads", "1")
    assert code == 0, err
    _assert_same_numbers(tmp_path / "local", tmp_path / "ray", cells=3)


def test_local_workers_give_the_sequential_numbers(run_cli, tmp_path, karpathy_root, tiny_clip_folder, single_thread):
    code, _, err = run_cli(*_args(tmp_path, tiny_clip_folder, karpathy_root, "local"), "--workers", "1")
    assert code == 0, err
    assert "note: every cell ran with one seed (0): a difference between rows may be that seed's luck" in err
    code, _, err = run_cli(*_args(tmp_path, tiny_clip_folder, karpathy_root, "pool"), "--workers", "2")
    assert code == 0, err
    _assert_same_numbers(tmp_path / "local", tmp_path / "pool", cells=3)
    assert {r.threads for r in read_records(tmp_path / "pool").records} == {1}


def test_auto_workers():
    assert auto_workers("cpu", cpus=2) == 2 and auto_workers("cpu", cpus=64) == MAX_AUTO_WORKERS
    assert auto_workers("cpu", cpus=1) == 1 and auto_workers("cuda", cpus=16) == 1


POOL_SCRIPT = """
import os, sys, time
from pathlib import Path
from bench.executors.local import exited, stop_pool, worker_pool


def fit(marker):  # a long fit
    Path(marker).write_text(str(os.getpid()))
    time.sleep(120)


if __name__ == "__main__":
    marker = Path(sys.argv[2])
    pool = worker_pool(1)
    future = pool.submit(fit, str(marker))
    while not marker.exists():  # the worker has started its task
        time.sleep(0.05)
    time.sleep(0.2)
    worker = next(iter(pool._processes.values()))
    print(worker.pid, flush=True)
    if sys.argv[1] == "interrupt":
        stop_pool(pool)  # what an interrupted run does
        # by the pid, not is_alive(): the pool's thread may reap the worker first, and then
        # is_alive() says True for a process that no longer exists
        print("ended" if exited(worker.pid) else "alive", flush=True)
    else:
        time.sleep(120)  # until the test kills this process
"""


def _gone(pid: int) -> bool:
    """No such process, or (where /proc tells) a zombie nobody has reaped yet."""
    status = Path(f"/proc/{pid}/status")
    if Path("/proc").is_dir():
        try:
            return "\nState:\tZ" in status.read_text()
        except FileNotFoundError:
            return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _pool_script(tmp_path: Path, mode: str) -> subprocess.Popen:
    script = tmp_path / "pool.py"
    script.write_text(POOL_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    return subprocess.Popen([sys.executable, str(script), mode, str(tmp_path / "started")], stdout=subprocess.PIPE, text=True,
                            env=env)


def test_an_interrupted_pool_ends_its_running_workers(tmp_path):
    proc = _pool_script(tmp_path, "interrupt")
    out, _ = proc.communicate(timeout=60)  # well before the two-minute task would end by itself
    pid, state = out.split()
    assert proc.returncode == 0 and state == "ended" and _gone(int(pid))
    assert (tmp_path / "started").read_text() == pid  # the worker ended was the one running the task


def test_workers_exit_when_their_driver_is_killed(tmp_path):
    import signal
    import time

    proc = _pool_script(tmp_path, "kill")
    pid = int(proc.stdout.readline())
    os.kill(proc.pid, signal.SIGKILL)  # kill -9 of the driver: no cleanup runs in it
    proc.wait()
    for _ in range(100):  # the worker's watch notices within a second; its task had two minutes left
        if _gone(pid):
            break
        time.sleep(0.1)
    assert _gone(pid)


CRASHING_METHOD = '''
import os
from pathlib import Path
from bench.plugins import register_method
from bench.plugins.methods.clipre import CLIPRe

@register_method("crashonce")
class CrashOnce(CLIPRe):
    """Retrieval, but the first fit kills its own worker process."""
    def fit(self, corpus, ctx):
        marker = Path(os.environ["CRASH_MARKER"])
        if not marker.exists():
            marker.write_text("crashed")
            os.kill(os.getpid(), 9)
        super().fit(corpus, ctx)


@register_method("crashalways")
class CrashAlways(CLIPRe):
    """Retrieval, but every fit kills its own worker process (counting the kills)."""
    def fit(self, corpus, ctx):
        marker = Path(os.environ["CRASH_MARKER"])
        with open(marker, "a") as fh:
            fh.write("x")
        os.kill(os.getpid(), 9)
'''


def _install_crashing_method(tmp_path: Path, monkeypatch) -> None:
    """The ``crashonce`` plugin, found by this process and (through the environment) by workers."""
    import bench.plugins

    plugins = tmp_path / "plugins" / "methods"
    plugins.mkdir(parents=True)
    (plugins / "crashonce.py").write_text(textwrap.dedent(CRASHING_METHOD))
    monkeypatch.setenv("TEXTCAP_BENCH_PLUGINS", str(tmp_path / "plugins"))
    monkeypatch.setenv("CRASH_MARKER", str(tmp_path / "crashed"))
    bench.plugins.load_plugins(force=True)


def test_a_killed_worker_costs_its_cell_only(run_cli, tmp_path, karpathy_root, tiny_clip_folder, monkeypatch, ray_session):
    _install_crashing_method(tmp_path, monkeypatch)
    ray_session.init(num_cpus=2, include_dashboard=False, logging_level="ERROR",
                     runtime_env={"env_vars": {"TEXTCAP_BENCH_PLUGINS": str(tmp_path / "plugins"),
                                               "CRASH_MARKER": str(tmp_path / "crashed"), "HF_HUB_OFFLINE": "1"}})
    args = _args(tmp_path, tiny_clip_folder, karpathy_root, "run", methods="clipre,crashonce", decoder=False)
    code, _, err = run_cli(*args, "--executor", "ray")
    assert code == 1 and (tmp_path / "crashed").exists(), err
    assert [r.method for r in read_records(tmp_path / "run").records] == ["clipre"]
    failure = json.loads((tmp_path / "run" / "failures.jsonl").read_text().splitlines()[0])
    assert "crashonce" in failure["cell"]
    code, _, err = run_cli(*args, "--executor", "ray")  # the re-run finishes the failed cell only
    assert code == 0 and "1 of 2 cells are already complete" in err
    assert sorted(r.method for r in read_records(tmp_path / "run").records) == ["clipre", "crashonce"]


@pytest.mark.parametrize("method", ["nonoise", "clipre"])
def test_a_fit_saved_by_its_own_earlier_try_is_not_called_reused(tmp_path, tiny_clip_checkpoint, tiny_datasets, single_thread, method):
    """A worker that dies after saving its fit leaves it on disk; the fit task's retry (the same
    invocation of the run) reads it back and says it trained it, with that try's time; a fit
    saved by another invocation (an earlier run into the same folder) is reused."""
    import dataclasses

    from bench.executors import tasks
    from bench.grid import RunConfig, build_grid
    from bench.runner import Runner

    options = {f"decoder.{k}": v for k, v in TINY_DECODER["decoder"].items()}
    run = RunConfig(methods=(method,), splits=("tiny-coco",), seeds=(0,), out=tmp_path / "run",
                    cache_dir=tmp_path / "cache", encoder=tiny_clip_checkpoint,
                    method_options=options if method == "nonoise" else {})
    runner = Runner(run, log=lambda m: None)
    todo = runner.resolve(build_grid(run))
    plan = tasks.plan(runner, todo, threads=1)
    (fit,) = plan.fits.values()
    assert fit.invocation and tasks.plan(runner, todo, threads=1).fits[next(iter(plan.fits))].invocation != fit.invocation
    tasks._RUNNERS.clear()
    first = tasks.run_task(fit)
    assert first["reused"] is False and first["seconds"] > 0
    saved = json.loads((run.out / "checkpoints" / first["fit_key"] / "fit.json").read_text())
    tasks._RUNNERS.clear()  # the retry runs in a fresh worker
    again = tasks.run_task(fit)
    assert again == {"fit_key": first["fit_key"], "reused": False, "seconds": saved["fit_seconds"]}
    assert first["reused"] is False and first["seconds"] >= saved["fit_seconds"]  # training, then saving
    tasks._RUNNERS.clear()
    later = tasks.run_task(dataclasses.replace(fit, invocation="another run"))
    assert later["reused"] is True and later["fit_key"] == first["fit_key"]
    tasks._RUNNERS.clear()


def test_a_local_worker_killed_once_costs_nothing(run_cli, tmp_path, karpathy_root, tiny_clip_folder, monkeypatch):
    """A dead worker breaks its pool and every task in flight on it; each runs again, alone."""
    _install_crashing_method(tmp_path, monkeypatch)  # local workers inherit the environment
    args = _args(tmp_path, tiny_clip_folder, karpathy_root, "run", methods="clipre,crashonce", decoder=False)
    code, _, err = run_cli(*args, "--workers", "2")
    assert code == 0 and (tmp_path / "crashed").read_text() == "crashed", err  # it did kill its worker
    assert sorted(r.method for r in read_records(tmp_path / "run").records) == ["clipre", "crashonce"]
    assert not (tmp_path / "run" / "failures.jsonl").exists()
    again = _args(tmp_path, tiny_clip_folder, karpathy_root, "sequential", methods="clipre,crashonce", decoder=False)
    assert run_cli(*again, "--workers", "1", "--threads", "1")[0] == 0  # one thread, as each worker task
    expected, got = _metrics(tmp_path / "sequential"), _metrics(tmp_path / "run")  # a run without the death
    assert expected.keys() == got.keys() and all(got[c] == pytest.approx(expected[c], abs=1e-6) for c in expected)


def test_a_local_worker_that_dies_every_time_costs_its_own_cell_only(run_cli, tmp_path, karpathy_root, tiny_clip_folder,
                                                                      monkeypatch):
    _install_crashing_method(tmp_path, monkeypatch)
    args = _args(tmp_path, tiny_clip_folder, karpathy_root, "run", methods="clipre,crashalways", decoder=False)
    code, _, err = run_cli(*args, "--workers", "2")
    assert code == 1, err
    assert (tmp_path / "crashed").read_text() == "xx"  # once with the pool, once alone: no third try
    assert [r.method for r in read_records(tmp_path / "run").records] == ["clipre"]  # its neighbour completes
    failures = [json.loads(line) for line in (tmp_path / "run" / "failures.jsonl").read_text().splitlines()]
    assert len(failures) == 1 and "crashalways" in failures[0]["cell"]
    assert "its worker process died twice, the second time running it alone" in json.dumps(failures[0])


def test_tasks_lost_with_a_broken_pool_run_again_one_at_a_time_alone(monkeypatch):
    """Fit A kills its worker on its first attempt, while fit B runs beside it; fit Z kills its
    worker on every attempt. Each lost task runs once more in a pool of one, never two retries
    at once and never more processes than workers; Z fails alone, everything else is stored."""
    import threading
    import time
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool
    from types import SimpleNamespace

    import bench.executors.base
    import bench.executors.tasks as tasks
    from bench.executors.local import WorkerPools

    def cell(name):
        return SimpleNamespace(name=name, split=SimpleNamespace(train="d", eval="e"))

    names = ("A", "B", "C", "Z")
    graph = tasks.Plan(fits={k: tasks.Task("fit", None, cell(k)) for k in names},
                       cells=[(tasks.Task("cell", None, cell(f"{k}1")), k, f"{k}1") for k in names])
    monkeypatch.setattr(tasks, "plan", lambda runner, todo, threads: graph)
    stored, failures = [], []
    monkeypatch.setattr(bench.executors.base, "accept", lambda runner, report, c, value, fit=None, cell_id="": stored.append(c.name))
    runner = SimpleNamespace(record_failure=lambda report, c, cell_id, line, text: failures.append((c.name, line)))
    deaths = {"A": 1, "Z": 2}  # how many of its attempts kill their worker
    attempts: dict[str, list[int]] = {}  # task -> the size of the pool each attempt ran in
    running, peak, alone_peak, alone, made, lock = set(), [0], [0], set(), [], threading.Lock()

    class FakePool:
        def __init__(self, workers):
            self.workers, self.broken, self.live = workers, False, {}
            made.append(self)  # kept alive, so that no two pools share an id()
            if workers == 1:
                alone.add(id(self))

        def submit(self, fn, task):
            if self.broken:
                raise BrokenProcessPool("a worker died")
            future, name = Future(), task.cell.name
            with lock:
                attempts.setdefault(name, []).append(self.workers)
                attempt = len(attempts[name])
                self.live[future] = name
                running.add((id(self), name))
                peak[0] = max(peak[0], len(running))
                if self.workers == 1:
                    alone_peak[0] = max(alone_peak[0], sum(1 for pool_id, _ in running if pool_id in alone))

            def finish():
                time.sleep(0.3 if name == "B" else 0.05)
                with lock:
                    if future.done():  # its pool broke under it
                        return
                    running.discard((id(self), name))
                    del self.live[future]
                    if attempt <= deaths.get(name, 0):  # the pool breaks: every task on it is lost
                        self.broken = True
                        for other, other_name in list(self.live.items()):
                            running.discard((id(self), other_name))
                            other.set_exception(BrokenProcessPool("a worker died"))
                        self.live.clear()
                        future.set_exception(BrokenProcessPool("a worker died"))
                    else:
                        future.set_result({"reused": False, "seconds": 1.0} if task.kind == "fit"
                                          else {"record": {"timings": {"fit": 0.0}}})

            threading.Thread(target=finish, daemon=True).start()
            return future

        def shutdown(self, wait=True, cancel_futures=False):
            pass

    pools = WorkerPools(2, new_pool=FakePool)
    tasks.drive(runner, [], None, 1, pools.submit, pools.first_done, pools.result, capacity=2)
    assert sorted(stored) == ["A1", "B1", "C1"]
    assert len(failures) == 1 and failures[0][0] == "Z1" and "WorkerDied: its worker process died twice" in failures[0][1]
    assert attempts["A"] == [2, 1] and attempts["Z"] == [2, 1]  # once with the pool, once alone
    assert attempts["B"] == [2, 1]  # lost with A's pool, run again alone
    assert peak[0] <= 2 and alone_peak[0] == 1  # never two retries at once


def test_slurm_job_arrays_locally_give_the_local_numbers(run_cli, tmp_path, karpathy_root, tiny_clip_folder, single_thread):
    code, _, err = run_cli(*_args(tmp_path, tiny_clip_folder, karpathy_root, "local"))
    assert code == 0, err
    code, _, err = run_cli(*_args(tmp_path, tiny_clip_folder, karpathy_root, "slurm"), "--executor", "slurm",
                           "--slurm-cluster", "local", "--threads", "1")
    assert code == 0, err
    _assert_same_numbers(tmp_path / "local", tmp_path / "slurm")
    # job logs live in the run folder, one subfolder per invocation (no job id of an earlier run is ever read back)
    (invocation,) = (tmp_path / "slurm" / "slurm").iterdir()
    assert list(invocation.glob("*_log.out")), "job logs live in the run folder"


_ENCODE_ONCE = """
import sys, time
import numpy as np
from pathlib import Path
from bench.cache import CacheKey, EmbeddingCache
cache = EmbeddingCache(sys.argv[1], log=lambda m: None)
def compute():
    with open(sys.argv[2], "a") as fh:
        fh.write("computed\\n")
    time.sleep(1.0)
    return np.arange(12, dtype=np.float32).reshape(3, 4)
out = cache.get(CacheKey("enc@1", "d", "train", "text", "c"), compute)
print(float(np.asarray(out).sum()))
"""


def test_two_processes_on_one_cache_key_leave_one_valid_entry(tmp_path):
    import numpy as np

    from bench.cache import CacheKey, EmbeddingCache

    log = tmp_path / "computed.txt"
    procs = [subprocess.Popen([sys.executable, "-c", _ENCODE_ONCE, str(tmp_path / "cache"), str(log)], stdout=subprocess.PIPE,
                              text=True) for _ in range(3)]
    outputs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs) and outputs == ["66.0"] * 3
    assert log.read_text().count("computed") == 1  # the others waited for it and read it
    cache = EmbeddingCache(tmp_path / "cache", log=lambda m: None)
    key = CacheKey("enc@1", "d", "train", "text", "c")
    assert np.array_equal(np.asarray(cache._valid(key)), np.arange(12, dtype=np.float32).reshape(3, 4))
    assert [p.name for p in (tmp_path / "cache" / "embeddings").iterdir() if not p.name.startswith(".")] == [cache.folder(key).name]


def test_two_runs_sharing_a_cache_at_once(tmp_path, karpathy_root, tiny_clip_folder):
    env = {**os.environ, "BENCH_PROGRESS": "0", "HF_HUB_OFFLINE": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "bench", *_args(tmp_path, tiny_clip_folder, karpathy_root, out)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for out in ("one", "two")]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-400:] for o in outputs]
    assert _metrics(tmp_path / "one") == _metrics(tmp_path / "two")
    from bench.cache import EmbeddingCache

    cache = EmbeddingCache(tmp_path / "cache", log=lambda m: None)
    entries = [p for p in cache.root.iterdir() if p.is_dir()]
    assert entries and all(json.loads((e / "manifest.json").read_text())["count"] > 0 for e in entries)
    assert not list(cache.root.rglob("*.tmp"))


def test_a_local_pool_runs_ready_cells_before_waiting_fits(monkeypatch):
    """With a capacity (a local pool's workers), cells are recorded as their fits finish, not
    after every fit; the first cell of a fit trained now carries the fit's time."""
    from types import SimpleNamespace

    import bench.executors.base
    import bench.executors.tasks as tasks

    def cell(name):
        return SimpleNamespace(name=name, split=SimpleNamespace(train="d", eval="e"))

    graph = tasks.Plan(fits={k: tasks.Task("fit", None, cell(k)) for k in ("A", "B", "C")},
                       cells=[(tasks.Task("cell", None, cell(f"{k}{i}")), k, f"{k}{i}") for k in ("A", "B", "C") for i in (1, 2)])
    monkeypatch.setattr(tasks, "plan", lambda runner, todo, threads: graph)
    stored = []
    monkeypatch.setattr(bench.executors.base, "accept", lambda runner, report, c, value, fit=None, cell_id="": stored.append((c.name, fit)))
    started, in_flight = [], []

    def submit(task):
        started.append((task.kind, task.cell.name))
        in_flight.append(task)
        return len(in_flight) - 1  # a handle

    def result(handle):
        if in_flight[handle].kind == "fit":
            return {"reused": False, "seconds": 12.5}
        return {"record": {"timings": {"fit": 0.0}}}

    tasks.drive(None, [], None, 1, submit, lambda pending: min(pending), result, capacity=1)
    assert started == [("fit", "A"), ("cell", "A1"), ("cell", "A2"), ("fit", "B"), ("cell", "B1"), ("cell", "B2"),
                       ("fit", "C"), ("cell", "C1"), ("cell", "C2")]
    assert stored[0] == ("A1", {"reused": False, "seconds": 12.5}) and stored[1] == ("A2", None)
    started.clear()
    tasks.drive(None, [], None, 1, submit, lambda pending: min(pending), result)  # no capacity: every fit at once
    assert [kind for kind, _ in started[:3]] == ["fit", "fit", "fit"]


def test_a_local_pool_does_not_start_two_fits_of_one_decoder_side_by_side(monkeypatch):
    """nonoise and decap train one decoder per seed: with two workers, the second of them would
    only wait for the first's lock, so a fit whose decoder may be in training waits while other
    fits go first (syntic's, which shares nothing, is not held back); when every waiting fit
    conflicts, one starts anyway."""
    from types import SimpleNamespace

    import bench.executors.base
    import bench.executors.tasks as tasks

    def cell(name):
        return SimpleNamespace(name=name, split=SimpleNamespace(train="d", eval="e"))

    shares = {"nonoise0": ("d", 0, "plain"), "decap0": ("d", 0, "plain"), "nonoise1": ("d", 1, "plain"),
              "decap1": ("d", 1, "plain")}

    def plan_of(names):
        return tasks.Plan(fits={n: tasks.Task("fit", None, cell(n)) for n in names},
                          cells=[(tasks.Task("cell", None, cell(n)), n, n) for n in names],
                          shares={n: shares[n] for n in names if n in shares})

    graph = plan_of(["nonoise0", "decap0", "syntic0", "nonoise1", "decap1"])
    monkeypatch.setattr(tasks, "plan", lambda runner, todo, threads: graph)
    monkeypatch.setattr(bench.executors.base, "accept", lambda *args, **kwargs: None)
    started, in_flight = [], []

    def submit(task):
        if task.kind == "fit":
            started.append(task.cell.name)
        in_flight.append(task)
        return len(in_flight) - 1

    def result(handle):
        return {"reused": False, "seconds": 1.0} if in_flight[handle].kind == "fit" else {"record": {}}

    tasks.drive(None, [], None, 1, submit, lambda pending: min(pending), result, capacity=2)  # the oldest finishes first
    assert started == ["nonoise0", "syntic0", "decap0", "nonoise1", "decap1"]
    started.clear()
    graph = plan_of(["nonoise0", "decap0"])  # both conflict: one starts anyway, no worker idles
    tasks.drive(None, [], None, 1, submit, lambda pending: min(pending), result, capacity=2)
    assert started == ["nonoise0", "decap0"]


def test_methods_name_the_decoders_they_may_share():
    """The fits the decoder cache shares (decap's with nonoise's, viecap's without its hard
    prompt with capdec's at the same σ²) have one ``shared_decoder``; the others differ or share none."""
    from dataclasses import replace

    from bench.plugins import METHODS, load_plugins

    load_plugins()

    def shared(name, **changes):
        method = METHODS.get(name)
        return method.shared_decoder(replace(method.Config(), **changes))

    assert shared("decap") == shared("capdec", noise_variance=0.0) is not None
    assert shared("capdec") != shared("decap") and shared("capdec") == shared("viecap", hard_prompt=False)
    assert shared("viecap") is None and shared("syntic") is None and shared("clipre") is None
    assert shared("decap", decoder=replace(METHODS.get("decap").Config().decoder, epochs=3)) != shared("decap")
    # what only decoding reads is not part of the fit (as in the decoder cache's key)
    assert shared("decap", decoder=replace(METHODS.get("decap").Config().decoder, beam_size=3)) == shared("decap")


def test_accept_puts_a_trained_fit_and_its_time_on_the_first_cell_only():
    """Every executor stores a worker's cell through ``accept``: the first cell of a fit trained
    now says so and carries the fit task's time; a later cell says what its own worker did."""
    from types import SimpleNamespace

    from bench.executors.base import accept

    line = (Path(__file__).parent / "fixtures" / "report_run" / "records.jsonl").read_text().splitlines()[0]
    value = {"record": {**json.loads(line), "fit_reused": False, "timings": {"fit": 0.01, "score": 2.0}}, "samples": []}
    stored = []
    checked = []
    runner = SimpleNamespace(store=SimpleNamespace(add=lambda record, samples, same_inputs=False: (
        stored.append(record), checked.append(same_inputs))))
    report = SimpleNamespace(completed=[], fits=0, fits_reused=0)
    accept(runner, report, None, value, fit={"reused": False, "seconds": 12.3456})
    accept(runner, report, None, value, fit={"reused": True, "seconds": 0.2})
    import dataclasses

    from bench.records import Record

    # a later cell's worker loaded the saved fit (a record as a worker writes it: today's schema)
    loaded = {**value, "record": dataclasses.replace(Record.from_dict(value["record"]), fit_reused=True).to_dict()}
    accept(runner, report, None, loaded)
    accept(runner, report, None, value)  # ... or found it unusable and trained again: it says so
    # the second: the fit task reused a saved fit, and the cell's worker found it unusable and
    # trained it again itself: trained now, in the cell's own time
    assert [(r.fit_reused, r.timings) for r in stored] == [(False, {"fit": 12.346, "score": 2.0}),
                                                           (False, {"fit": 0.01, "score": 2.0}),
                                                           (True, {"fit": 0.01, "score": 2.0}),
                                                           (False, {"fit": 0.01, "score": 2.0})]
    assert (report.fits, report.fits_reused) == (3, 1) and value["record"]["timings"] == {"fit": 0.01, "score": 2.0}
    accept(runner, report, None, loaded, fit={"reused": True, "seconds": 0.2})  # both reused
    assert (stored[-1].fit_reused, report.fits_reused) == (True, 2)
    assert checked == [True] * 5  # a run's cells are stored with the folder's one-set-of-inputs check


def test_slurm_cells_are_handed_over_as_their_jobs_end():
    """A stage's results come back as each job ends, not after the slowest: the driver stores each
    cell at once, so a driver stopped mid-stage keeps the cells that finished."""
    from bench.executors.base import CellProgress
    from bench.executors.slurm import SlurmExecutor

    class Job:
        def __init__(self, value):
            self.value, self.finished = value, False

        def done(self):
            return self.finished

        def result(self):
            if isinstance(self.value, BaseException):
                raise self.value
            return self.value

    jobs = [Job("slow"), Job("fast"), Job(RuntimeError("killed"))]

    class Fake:
        def map_array(self, fn, tasks):
            return jobs

    from bench.executors.config import ExecutorConfig

    slurm = SlurmExecutor(ExecutorConfig(kind="slurm", partition="gpu"))
    stage = slurm._stage_as_done(Fake(), ["a", "b", "c"], CellProgress(3), poll=0.001)
    jobs[1].finished = True
    assert next(stage) == (1, "fast")  # job 0 still running
    jobs[2].finished = True
    index, outcome = next(stage)
    assert index == 2 and isinstance(outcome, RuntimeError)
    jobs[0].finished = True
    assert next(stage) == (0, "slow")
    assert next(stage, None) is None
    # the local "cluster" has no array parallelism of its own: at most --array-parallelism jobs at once
    class Local:  # jobs end when their result is read; counts how many ran at once
        running = peak = 0

        def submit(self, fn, task):
            Local.running += 1
            Local.peak = max(Local.peak, Local.running)
            job = Job(task)
            job.finished = True
            real = job.result

            def result():
                Local.running -= 1
                return real()

            job.result = result
            return job

    local = SlurmExecutor(ExecutorConfig(kind="slurm", slurm_cluster="local", array_parallelism=2))
    stage = local._stage_as_done(Local(), ["a", "b", "c", "d"], CellProgress(4), poll=0.001)
    assert sorted(stage) == [(0, "a"), (1, "b"), (2, "c"), (3, "d")] and Local.peak == 2
    with pytest.raises(ConfigError, match="whole number with --executor slurm"):
        ExecutorConfig(kind="slurm", partition="gpu", gpus_per_task=0.5)


def test_the_sequential_executor_stops_when_another_run_wrote_other_inputs_into_the_folder():
    """A cell that fails goes to failures.jsonl and the next cell runs; a folder that now holds
    another run's inputs stops the run at once (every further cell would conflict the same way),
    as the worker pool does, instead of computing every remaining cell to throw it away."""
    from types import SimpleNamespace

    from bench.errors import BenchError, InputConflict
    from bench.executors.config import ExecutorConfig
    from bench.executors.sequential import SequentialExecutor

    def runner(fail):
        ran, failed = [], []

        def execute_cell(cell):
            ran.append(cell)
            if cell in fail:
                raise fail[cell]
            return SimpleNamespace(fit_reused=False)

        return ran, failed, SimpleNamespace(execute_cell=execute_cell,
                                            record_failure=lambda report, cell, cell_id, *_: failed.append(cell))

    todo = [("a", "1"), ("b", "2"), ("c", "3")]
    ran, failed, bad_cell = runner({"a": BenchError("no such file")})
    SequentialExecutor(ExecutorConfig(workers=1)).run(bad_cell, todo, SimpleNamespace(completed=[], fits_reused=0, fits=0))
    assert ran == ["a", "b", "c"] and failed == ["a"]
    ran, failed, raced = runner({"b": InputConflict("runs/x now holds results computed with encoder other@1")})
    with pytest.raises(InputConflict):
        SequentialExecutor(ExecutorConfig(workers=1)).run(raced, todo, SimpleNamespace(completed=[], fits_reused=0, fits=0))
    assert ran == ["a", "b"] and failed == []


def test_a_cell_fails_for_its_own_test_images_and_a_result_of_another_cell_is_never_stored():
    """coco and coco->flickr share one fit: flickr's test images failing to encode fails the
    cross-domain cell only (the fit and the in-domain cell go on), and a task whose result holds
    another cell's record (a stale result file) fails its cell instead of storing that record."""
    from types import SimpleNamespace

    from bench.executors.tasks import drive
    from bench.grid import Cell
    from bench.plugins import load_plugins, method_config
    from bench.records import Record
    from bench.splits import parse_split

    load_plugins()
    cells = [Cell("nonoise", parse_split(s), 0, method_config("nonoise", {})) for s in ("shapes-coco", "shapes-coco->shapes-flickr")]
    ids = {id(c): f"cell{i}" for i, c in enumerate(cells)}

    def engine(broken_images: str, returned_id):
        failures, stored = [], []
        runner = SimpleNamespace(
            run=None, encoder=SimpleNamespace(id="enc@1"), inputs=SimpleNamespace(train_fingerprint=lambda d: "fp"),
            record_failure=lambda report, cell, cell_id, line, text: failures.append((cell_id, line)),
            store=SimpleNamespace(add=lambda record, samples, same_inputs=False: stored.append(record.cell_id)))

        def result(task):
            if task.kind == "encode" and (task.dataset, task.modality) == (broken_images, "image"):
                raise RuntimeError(f"{broken_images} test images could not be encoded")
            if task.kind == "cell":
                record = Record(method="nonoise", split=str(task.cell.split), train="t", eval="e", kind="in-domain", seed=0,
                                config={}, metrics={"cider": 1.0}, cell_id=returned_id(ids[id(task.cell)]))
                return {"record": record.to_dict(), "samples": []}
            return {"reused": False, "seconds": 1.0}

        report = SimpleNamespace(completed=[], fits_reused=0, fits=0)
        drive(runner, [(c, ids[id(c)]) for c in cells], report, 1, lambda t: t, lambda pending: pending[0], result, capacity=2)
        return failures, stored

    failures, stored = engine("shapes-flickr", lambda mine: mine)
    assert stored == ["cell0"] and failures == [("cell1", "RuntimeError: shapes-flickr test images could not be encoded")]
    failures, stored = engine("none", lambda mine: "someoneelse")
    assert stored == [] and len(failures) == 2 and all("returned the result of cell someoneelse" in line for _, line in failures)


def test_a_cell_is_blocked_by_its_own_training_captions_or_test_images_only():
    """The rule both engines (the task graph and Slurm's arrays) apply after the encode stage."""
    from bench.executors.tasks import Task, encode_failure, input_failure
    from bench.grid import Cell, RunConfig
    from bench.plugins import load_plugins, method_config
    from bench.splits import parse_split

    load_plugins()
    run = RunConfig()
    same, cross = (Cell("nonoise", parse_split(s), 0, method_config("nonoise", {}))
                   for s in ("shapes-coco", "shapes-coco->shapes-flickr"))
    images = dict([encode_failure(Task("encode", run, dataset="shapes-flickr", modality="image"), RuntimeError("bad png"))])
    assert images == {"shapes-flickr/image": "RuntimeError: bad png"}
    assert input_failure(images, same) == "" and input_failure(images, cross) == "RuntimeError: bad png"
    captions = dict([encode_failure(Task("encode", run, dataset="shapes-coco", modality="text"), OSError("disk"))])
    assert input_failure(captions, same) == input_failure(captions, cross) == "OSError: disk"
