"""Tune callbacks the Ray tests put into a sweep's driver: they act on the sweep's own events
(a trial completed, Tune's experiment state saved) instead of on the clock.

A test installs them through :func:`mmray.tuning.runner._extra_callbacks`: in its own process with
``monkeypatch``, or in a ``python -m mmray.tune`` subprocess through :data:`DRIVER`, which reads
the callbacks from the ``MMRAY_TEST_HOOKS`` environment variable (JSON). Tune pickles the callbacks
with the run configuration and restores them on ``--resume``: each acts once (a marker file), and
this module must be importable there too (the tests directory on ``PYTHONPATH``).
"""

from __future__ import annotations

import glob
import inspect
import json
import os
import signal
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ray import tune

#: ``python -c DRIVER ARGS...`` runs ``mmray tune ARGS...`` with the callbacks in ``MMRAY_TEST_HOOKS``
DRIVER = """
import json, os, sys
import tune_hooks
from mmray.tuning import runner
hooks = [getattr(tune_hooks, name)(**kwargs) for name, kwargs in json.loads(os.environ["MMRAY_TEST_HOOKS"])]
runner._extra_callbacks = lambda: hooks
from mmray.tune import main
sys.exit(main(sys.argv[1:]))
"""


def driver_env(hooks: list[tuple[str, dict[str, Any]]]) -> dict[str, str]:
    """The environment of a :data:`DRIVER` subprocess running ``hooks`` (``[(class name, kwargs), ...]``)."""
    env = dict(os.environ)
    here = str(Path(__file__).resolve().parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    env["MMRAY_TEST_HOOKS"] = json.dumps(hooks)
    return env


def saved_statuses(run_dir: str) -> dict[str, str]:
    """Trial id -> status in Tune's newest saved experiment state in ``run_dir`` ({} if none)."""
    files = sorted(glob.glob(os.path.join(run_dir, "experiment_state-*.json")))
    if not files:
        return {}
    state = json.loads(Path(files[-1]).read_text())
    return {json.loads(t)["trial_id"]: json.loads(t)["status"] for t, _ in state["trial_data"]}


def http_status(url: str, token: str | None = None) -> int:
    """HTTP status of a GET of ``url``, with ``Authorization: Bearer token`` when given."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _controller() -> Any:
    """Tune's ``TuneController`` that is calling this callback (found on the call stack)."""
    frame = inspect.currentframe()
    while frame is not None:
        owner = frame.f_locals.get("self")
        if type(owner).__name__ == "TuneController":
            return owner
        frame = frame.f_back
    raise RuntimeError("not called from Tune's controller")


class CtrlC(tune.Callback):
    """Send the driver what Ctrl-C sends when the first trial completes (once)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if not os.path.exists(self.marker):
            Path(self.marker).touch()
            os.kill(os.getpid(), signal.SIGINT)


class KillWhenSaved(tune.Callback):
    """SIGKILL the driver and the Ray processes it started (its process group) as soon as Tune's saved
    experiment state on the storage path lists ``finished`` trials as finished, in full (once).

    At the start of each step (Tune's controller calls it from its loop, the only thread that starts an
    upload of the experiment state) it first waits for the upload the previous step started, so the file
    it reads, and leaves behind, is whole: the controller's storage context and its syncer are private
    attributes of Ray 2.x's ``TuneController``. Before the kill it records the dashboard's answers to an
    API request without and with the auth token (``~/.ray/auth_token``) in ``dashboard_file``.
    """

    def __init__(self, finished: int, marker: str, dashboard_file: str) -> None:
        self.finished, self.marker, self.dashboard_file = finished, marker, dashboard_file

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        if os.path.exists(self.marker):
            return
        storage = _controller()._storage
        storage.syncer.wait()
        statuses = saved_statuses(storage.experiment_fs_path)
        if sum(s == "TERMINATED" for s in statuses.values()) < self.finished:
            return
        import ray

        url = ray._private.worker.get_dashboard_url()  # the address the CLI printed
        url = url if url.startswith("http") else f"http://{url}"
        token = Path("~/.ray/auth_token").expanduser().read_text().strip()
        api = f"{url}/api/version"
        answers = {"url": url, "without_token": http_status(api), "with_token": http_status(api, token),
                   "saved": statuses}
        Path(self.dashboard_file).write_text(json.dumps(answers))
        Path(self.marker).touch()
        os.killpg(os.getpgid(0), signal.SIGKILL)
