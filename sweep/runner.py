"""Jobs, the resumable job store and the scheduler that fans jobs out over the servers.

* A :class:`Job` is one image request (method, ω, prompt, seed); its id is a hash of what it renders (the
  user's workflow, the method's chain, ω, the prompt text, the seed, the sampler and inputs swept), so the
  same command run again finds its finished jobs, whatever their order or the servers used.
* :class:`JobStore` keeps one JSON file per job under ``OUT/jobs/``, written atomically *after* the job's
  images are on disk; a job with a ``done`` record and all its images is finished and never redone. Every
  event (submitted, done, failed, requeued, server down) is appended to ``OUT/events.jsonl``.
* :class:`Scheduler` runs ``max_inflight`` worker threads per server, so each server always has the next
  job queued while it renders one. A worker whose server dies or times out puts its job back at the front
  of the queue for the other servers; a server that went down gets no more jobs. A job that the server
  rejects or fails to execute is recorded as failed (it would fail anywhere) and retried on the next run.
"""

from __future__ import annotations

import collections
import hashlib
import io
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from scripts.comfy_http import ComfyClient, ServerDown

from . import metrics
from .client import Finished, JobFailed, JobTimeout, Session

log = logging.getLogger("DiffIER.sweep")


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha(value: Any, n: int = 16) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:n]


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", text).strip("_")[:80] or "x"


@dataclass
class Job:
    """One image request. ``prompt`` is the API workflow to queue; ``spec`` what identifies it."""

    id: str
    method: str
    omega: float
    prompt_index: int
    prompt_text: str | None
    seed: int | None
    prompt: dict
    spec: dict
    attempts: list[dict] = field(default_factory=list)
    avoid: set[str] = field(default_factory=set)

    def key(self) -> str:
        """The image key ``p<prompt>_s<seed>``, shared by every method and ω (used to pair references)."""
        return f"p{self.prompt_index}_s{'x' if self.seed is None else self.seed}"

    def describe(self) -> str:
        return f"{self.method} ω={self.omega:g} {self.key()}"

    def image_name(self, index: int) -> str:
        return f"{safe_name(self.method)}/w{self.omega:g}/{self.key()}_{index}_{self.id[:8]}.png"


def make_job_id(spec: dict) -> str:
    return sha(spec)


class JobStore:
    """Job records and images under ``root`` (``jobs/<id>.json``, ``images/...``, ``events.jsonl``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.jobs_dir = self.root / "jobs"
        self.images_dir = self.root / "images"
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self.images_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def record_path(self, job_id: str) -> Path:
        return self.jobs_dir / f"{job_id}.json"

    def load(self, job_id: str) -> dict | None:
        try:
            return json.loads(self.record_path(job_id).read_text())
        except (OSError, ValueError):
            return None

    def is_done(self, job_id: str) -> bool:
        rec = self.load(job_id)
        return bool(rec and rec.get("status") == "done" and rec.get("images")
                    and all((self.root / img["path"]).is_file() for img in rec["images"]))

    def _write(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    def event(self, kind: str, **data: Any) -> None:
        line = canonical_json({"t": round(time.time(), 3), "event": kind, **data}) + "\n"
        with self._lock, open(self.root / "events.jsonl", "a", encoding="utf-8") as fh:
            fh.write(line)

    def save_done(self, job: Job, server: str, finished: Finished) -> dict | None:
        """Write the images, then the record; None if the job was already recorded done (kept as it was)."""
        with self._lock:
            if self.is_done(job.id):
                return None
        images = []
        for i, (record, data) in enumerate(finished.images):
            rel = Path("images") / job.image_name(i)
            self._write(self.root / rel, data)
            with Image.open(io.BytesIO(data)) as im:
                arr = np.asarray(im.convert("RGB"))
            images.append({"path": rel.as_posix(), "server_file": record, "width": int(arr.shape[1]),
                           "height": int(arr.shape[0]), **metrics.image_metrics(arr)})
        n = len(images)
        rec = {"id": job.id, "status": "done", "method": job.method, "omega": job.omega, "key": job.key(),
               "prompt_index": job.prompt_index, "prompt": job.prompt_text, "seed": job.seed, "server": server,
               "prompt_id": finished.prompt_id, "wall_s": round(finished.wall_s, 4),
               "exec_s": None if finished.exec_s is None else round(finished.exec_s, 4),
               "wall_s_per_image": round(finished.wall_s / n, 4),
               "exec_s_per_image": None if finished.exec_s is None else round(finished.exec_s / n, 4),
               "images": images, "attempts": job.attempts, "spec": job.spec, "finished_at": time.time()}
        with self._lock:
            if self.is_done(job.id):
                return None
            self._write(self.record_path(job.id), json.dumps(rec, indent=1).encode())
        return rec

    def save_failed(self, job: Job, error: str) -> None:
        with self._lock:
            if self.is_done(job.id):
                return  # never overwrite a finished job
            rec = {"id": job.id, "status": "failed", "method": job.method, "omega": job.omega, "key": job.key(),
                   "prompt_index": job.prompt_index, "prompt": job.prompt_text, "seed": job.seed, "error": error,
                   "attempts": job.attempts, "spec": job.spec, "finished_at": time.time()}
            self._write(self.record_path(job.id), json.dumps(rec, indent=1).encode())


@dataclass
class Progress:
    """Counters the scheduler reports through ``on_progress``."""

    done: int = 0
    failed: int = 0
    requeued: int = 0
    per_server: dict[str, int] = field(default_factory=dict)
    down: list[str] = field(default_factory=list)


class Scheduler:
    """Fan jobs over servers with bounded in-flight work per server.

    Args:
        clients: the usable servers.
        store: where results go.
        max_inflight: jobs queued at once on each server (one rendering, the rest waiting in its queue).
        job_timeout: seconds a job may run on a server (from its start there to its end).
        queue_timeout: seconds a job may wait in a server's queue before it starts (default: ``job_timeout``).
        max_attempts: tries per job across servers (timeouts and servers dying count).
        on_progress: called with the :class:`Progress` after every finished, failed or requeued job.
        prepare: ``prepare(job, server_url) -> prompt`` the API workflow to queue on that server.
    """

    def __init__(self, clients: list[ComfyClient], store: JobStore, max_inflight: int = 2,
                 job_timeout: float = 900.0, max_attempts: int = 3, queue_timeout: float | None = None,
                 on_progress: Callable[[Progress], None] | None = None,
                 prepare: Callable[[Job, str], dict] | None = None) -> None:
        if max_inflight < 1:
            raise ValueError(f"--max-inflight must be ≥ 1, got {max_inflight}")
        self.clients = clients
        self.store = store
        self.max_inflight = max_inflight
        self.job_timeout = job_timeout
        self.queue_timeout = job_timeout if queue_timeout is None else queue_timeout
        self.max_attempts = max_attempts
        self.on_progress = on_progress or (lambda p: None)
        self.prepare = prepare or (lambda job, url: job.prompt)
        self.progress = Progress(per_server={c.url: 0 for c in clients})
        self._pending: collections.deque[Job] = collections.deque()
        self._inflight = 0
        self._live = {c.url for c in clients}
        self._cond = threading.Condition()
        self.failures: list[tuple[Job, str]] = []

    def run(self, jobs: list[Job]) -> Progress:
        """Run every job; returns when each one is done or failed."""
        self._pending.extend(jobs)
        threads = [threading.Thread(target=self._worker, args=(c, i), name=f"sweep-{c.url}-{i}", daemon=True)
                   for c in self.clients for i in range(self.max_inflight)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with self._cond:  # every server went down: what is left fails
            while self._pending:
                job = self._pending.popleft()
                self._fail(job, "no server left to run it (every server went down)")
        return self.progress

    # -- queue -------------------------------------------------------------------------------------------------
    def _take(self, url: str) -> Job | None:
        with self._cond:
            while True:
                if url not in self._live:
                    return None
                for job in self._pending:
                    if url not in job.avoid or not (self._live - job.avoid):
                        self._pending.remove(job)
                        self._inflight += 1
                        return job
                if not self._pending and self._inflight == 0:
                    return None
                self._cond.wait(timeout=1.0)

    def _finish(self) -> None:
        with self._cond:
            self._inflight -= 1
            self._cond.notify_all()
        self.on_progress(self.progress)

    def _requeue(self, job: Job, url: str, why: str) -> None:
        with self._cond:
            job.avoid.add(url)
            if len(job.attempts) >= self.max_attempts:
                self._inflight -= 1
                self._fail(job, f"gave up after {len(job.attempts)} attempts; last: {why}")
                self._cond.notify_all()
            else:
                self._pending.appendleft(job)
                self._inflight -= 1
                self.progress.requeued += 1
                self.store.event("requeued", job=job.id, server=url, reason=why)
                self._cond.notify_all()
        self.on_progress(self.progress)

    def _fail(self, job: Job, error: str) -> None:
        self.progress.failed += 1
        self.failures.append((job, error))
        self.store.save_failed(job, error)
        self.store.event("failed", job=job.id, error=error)
        log.error("job %s (%s) failed: %s", job.id, job.describe(), error)

    def _server_down(self, url: str, why: str) -> None:
        with self._cond:
            if url in self._live:
                self._live.discard(url)
                self.progress.down.append(url)
                self.store.event("server_down", server=url, reason=why)
                log.error("server %s went down (%s); its jobs go to the other servers", url, why)
            self._cond.notify_all()

    # -- worker ------------------------------------------------------------------------------------------------
    def _worker(self, client: ComfyClient, slot: int) -> None:
        session = Session(client)
        try:
            while (job := self._take(client.url)) is not None:
                if not self._run_one(session, job):
                    return
        finally:
            session.close()

    def _run_one(self, session: Session, job: Job) -> bool:
        """Run one job; False when the server went down (the worker stops)."""
        url = session.client.url
        attempt = {"server": url, "started": time.time()}
        job.attempts.append(attempt)
        self.store.event("submitted", job=job.id, server=url)
        try:
            finished = session.run(self.prepare(job, url), self.job_timeout, extra={"diffier_sweep_job": job.id},
                                   queue_timeout=self.queue_timeout)
        except ServerDown as exc:
            attempt["outcome"] = f"server down: {exc}"
            self._server_down(url, str(exc))
            self._requeue(job, url, str(exc))
            return False
        except JobTimeout as exc:
            attempt["outcome"] = f"timeout: {exc}"
            session.close()
            self._requeue(job, url, str(exc))
            return True
        except JobFailed as exc:
            attempt["outcome"] = f"failed: {exc}"
            with self._cond:
                self._fail(job, str(exc))
            self._finish()
            return True
        attempt["outcome"] = "done"
        attempt["prompt_id"] = finished.prompt_id
        try:
            rec = self.store.save_done(job, url, finished)
        except (OSError, ValueError) as exc:  # a bad image or a full disk: the job fails, others go on
            with self._cond:
                self._fail(job, f"could not save its images: {exc}")
            self._finish()
            return True
        with self._cond:
            if rec is not None:
                self.progress.done += 1
                self.progress.per_server[url] = self.progress.per_server.get(url, 0) + 1
                self.store.event("done", job=job.id, server=url, prompt_id=finished.prompt_id)
        self._finish()
        return True
