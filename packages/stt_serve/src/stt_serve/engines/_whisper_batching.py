"""Cross-request batching for faster-whisper's `BatchedInferencePipeline`.

The pipeline batches the speech chunks of ONE file. A server gets many files at once, so here
every request gets its own light pipeline object whose decoding step (`generate_segment_batched`:
encoder + beam search over a batch of 30 s chunks) is handed to a shared `ChunkBatcher`. The
batcher merges the chunks of concurrent requests that decode alike (same task, language and
options) into one model call of up to `max_chunks` chunks, then gives each request its rows
back; the request's own pipeline does the rest (segment splitting, timestamps) as usual.

Threads: each request runs on its own engine worker thread and blocks in `generate()`; one of
the waiting threads at a time leads (gathers a batch, runs the model), the others wait for
their rows or for their turn to lead. No extra thread and no event loop involved.

Requests with word timestamps keep the pipeline's own per-request path (word alignment needs
the encoder output of exactly that request's chunks).

faster-whisper is imported lazily by the caller; this module only touches the pipeline's
documented-in-code methods `generate_segment_batched` and `forward` (faster-whisper 1.2).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np


class _Job:
    __slots__ = ("done", "error", "features", "options", "outputs", "tokenizer")

    def __init__(self, features: np.ndarray, tokenizer: Any, options: Any) -> None:
        self.features = features
        self.tokenizer = tokenizer
        self.options = options
        self.outputs: list[dict[str, Any]] | None = None
        self.error: BaseException | None = None
        self.done = False

    @property
    def size(self) -> int:
        return int(self.features.shape[0])

    def compatible(self, other: _Job) -> bool:
        return (
            self.tokenizer.task == other.tokenizer.task
            and self.tokenizer.language == other.tokenizer.language
            and self.options == other.options
        )


class ChunkBatcher:
    """Merges concurrent `generate_segment_batched` calls into shared model calls."""

    def __init__(
        self,
        generate: Callable[[np.ndarray, Any, Any], tuple[Any, list[dict[str, Any]]]],
        max_chunks: int,
        wait_s: float,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> None:
        self._generate = generate
        self._max = max(1, max_chunks)
        self._wait_s = max(0.0, wait_s)
        self._on_batch = on_batch
        self._cond = threading.Condition()
        self._queue: list[_Job] = []
        self._busy = False
        #: requests that are preparing their first chunks (VAD, features) and will queue soon
        self._preparing = 0
        self.batches = 0
        self.merged_batches = 0

    def expect(self) -> None:
        """A request started preparing: a batch being gathered waits (briefly) for it."""
        with self._cond:
            self._preparing += 1

    def arrived(self) -> None:
        """That request queued its first chunks, or ended without any."""
        with self._cond:
            self._preparing = max(0, self._preparing - 1)
            self._cond.notify_all()

    def generate(
        self, features: np.ndarray, tokenizer: Any, options: Any, *, first: bool = False
    ) -> list[dict[str, Any]]:
        """Model outputs for `features`, computed in a batch shared with other requests.
        `first`: this is the request's first call after `expect()`."""
        job = _Job(features, tokenizer, options)
        with self._cond:
            self._queue.append(job)
            if first:
                self._preparing = max(0, self._preparing - 1)
            self._cond.notify_all()
        while True:
            with self._cond:
                while self._busy and not job.done:
                    self._cond.wait()
                if job.done:
                    break
                self._busy = True
            self._lead()
        if job.error is not None:
            raise job.error
        assert job.outputs is not None
        return job.outputs

    def _gather(self) -> list[_Job]:
        """Under the lock: wait briefly for more compatible chunks, then take a batch."""
        deadline = time.monotonic() + self._wait_s
        while True:
            head = self._queue[0]
            ready = sum(j.size for j in self._queue if j.compatible(head))
            remaining = deadline - time.monotonic()
            # The batch is full, nobody else is about to queue, or time is up.
            if ready >= self._max or self._preparing == 0 or remaining <= 0:
                break
            self._cond.wait(remaining)
        head = self._queue[0]
        batch: list[_Job] = []
        total = 0
        for job in list(self._queue):
            if job.compatible(head) and (not batch or total + job.size <= self._max):
                batch.append(job)
                total += job.size
                self._queue.remove(job)
        return batch

    def _lead(self) -> None:
        batch: list[_Job] = []
        try:
            with self._cond:
                batch = self._gather()
            head = batch[0]
            features = (
                np.concatenate([j.features for j in batch], axis=0)
                if len(batch) > 1
                else head.features
            )
            _, outputs = self._generate(features, head.tokenizer, head.options)
            start = 0
            for job in batch:
                job.outputs = outputs[start : start + job.size]
                start += job.size
            self.batches += 1
            self.merged_batches += len(batch) > 1
            if self._on_batch is not None:
                self._on_batch(len(batch), int(features.shape[0]))
        except BaseException as exc:
            for job in batch:
                job.error = exc
        finally:
            with self._cond:
                for job in batch:
                    job.done = True
                self._busy = False
                self._cond.notify_all()


@functools.cache
def _pipeline_class() -> type:
    from faster_whisper import BatchedInferencePipeline

    class RequestPipeline(BatchedInferencePipeline):  # type: ignore[misc]
        """One request's pipeline; its model calls go through the shared batcher."""

        def __init__(self, model: Any, batcher: ChunkBatcher | None) -> None:
            super().__init__(model)
            self.batcher = batcher
            self.precomputed: list[dict[str, Any]] | None = None
            self.expected = False
            if batcher is not None:
                batcher.expect()
                self.expected = True

        def release(self) -> None:
            """The request is over: if it never queued, stop others waiting for it."""
            if self.expected and self.batcher is not None:
                self.expected = False
                self.batcher.arrived()

        def forward(self, features: Any, tokenizer: Any, chunks_metadata: Any, options: Any) -> Any:
            if self.batcher is None or options.word_timestamps:
                self.release()
                return super().forward(features, tokenizer, chunks_metadata, options)
            first, self.expected = self.expected, False
            self.precomputed = self.batcher.generate(
                np.asarray(features), tokenizer, options, first=first
            )
            try:
                # The pipeline's own forward, with the shared batch's rows as model output.
                return super().forward(features, tokenizer, chunks_metadata, options)
            finally:
                self.precomputed = None

        def generate_segment_batched(self, features: Any, tokenizer: Any, options: Any) -> Any:
            if self.precomputed is not None:
                return None, self.precomputed
            return super().generate_segment_batched(features, tokenizer, options)

    return RequestPipeline


def request_pipeline(model: Any, batcher: ChunkBatcher | None) -> Any:
    """A `BatchedInferencePipeline` for one request, decoding through `batcher` if given.
    Call its `release()` when the request ends."""
    return _pipeline_class()(model, batcher)
