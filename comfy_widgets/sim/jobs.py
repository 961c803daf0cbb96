"""ComfyUI 0.27's job view (`/api/jobs*`): queue items and history entries as one job dict.

Shapes as recorded (tests/reference/comfyui-0.27/http/jobs_*.json): a pending or running job is
`{id, status, priority, create_time, outputs_count: 0}`; a finished one adds execution start and
end times (ms, from the history's status messages), `execution_error` (the execution_error
message) when it failed, `outputs_count` and `preview_output` (the first output file, or a text
preview), and, for `/api/jobs/{id}`, `outputs`, `execution_status` and `workflow`. Keys whose
value would be None are left out. An interrupted prompt is "cancelled", an error "failed".
"""

from __future__ import annotations

from enum import Enum

PREVIEW_MEDIA = ("images", "video", "audio", "3d", "text")
TEXT_PREVIEW_MAX = 1024


class JobStatus(str, Enum):
    """Job states of the jobs API."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


def _pruned(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


def _workflow_id(extra_data: dict) -> str | None:
    workflow = (extra_data.get("extra_pnginfo") or {}).get("workflow") or {}
    return workflow.get("id") if isinstance(workflow, dict) else None


def queue_job(item: list | tuple, status: JobStatus) -> dict:
    """A pending or running queue item `[number, id, prompt, extra_data, outputs]` as a job."""
    extra = item[3]
    return _pruned(
        {
            "id": item[1],
            "status": status.value,
            "priority": item[0],
            "create_time": extra.get("create_time"),
            "outputs_count": 0,
            "workflow_id": _workflow_id(extra),
        }
    )


def _times_and_end(messages: list) -> tuple[int | None, int | None, dict | None, bool]:
    start = end = error = None
    interrupted = False
    for name, data in messages:
        if name == "execution_start":
            start = data.get("timestamp")
        elif name in ("execution_success", "execution_error", "execution_interrupted"):
            end = data.get("timestamp")
            error = data if name == "execution_error" else error
            interrupted = interrupted or name == "execution_interrupted"
    return start, end, error, interrupted


def _preview(outputs: dict) -> tuple[int, dict | None]:
    """How many output items there are, and the one the frontend would preview."""
    count, best, fallback = 0, None, None
    for node_id, node_outputs in outputs.items():
        for media, items in node_outputs.items():
            if media == "animated" or not isinstance(items, list):
                continue
            for item in items:
                if not isinstance(item, dict):
                    if media == "text":
                        count += 1
                        text = str(item)
                        preview = {"content": text[:TEXT_PREVIEW_MAX]}
                        if len(text) > TEXT_PREVIEW_MAX:
                            preview["truncated"] = True
                        fallback = fallback or {**preview, "nodeId": node_id, "mediaType": media}
                    continue
                count += 1
                if best is None and media in PREVIEW_MEDIA:
                    enriched = {**item, "nodeId": node_id, "mediaType": media}
                    if item.get("type") == "output":
                        best = enriched
                    else:
                        fallback = fallback or enriched
    return count, best or fallback


def history_job(prompt_id: str, entry: dict, full: bool = False) -> dict:
    """A finished prompt's history entry as a job (with outputs and workflow when `full`)."""
    number, _, prompt, extra, _ = entry["prompt"]
    status_info = entry.get("status") or {}
    start, end, error, interrupted = _times_and_end(status_info.get("messages", []))
    if status_info.get("status_str") == "error":
        status = JobStatus.CANCELLED if interrupted else JobStatus.FAILED
    else:
        status = JobStatus.COMPLETED
    count, preview = _preview(entry.get("outputs", {}))
    job = _pruned(
        {
            "id": prompt_id,
            "status": status.value,
            "priority": number,
            "create_time": extra.get("create_time"),
            "execution_start_time": start,
            "execution_end_time": end,
            "execution_error": error,
            "outputs_count": count,
            "preview_output": preview,
            "workflow_id": _workflow_id(extra),
        }
    )
    if full:
        job["outputs"] = entry.get("outputs", {})
        job["execution_status"] = status_info
        job["workflow"] = {"prompt": prompt, "extra_data": extra}
    return job


def all_jobs(running: list, pending: list, history: dict, wanted: list[str]) -> list[dict]:
    """The jobs of the ``wanted`` statuses: running, pending, then finished ones (unsorted).

    Like ComfyUI's ``get_all_jobs``, the history is only walked when a finished status is
    wanted, so polling the queue costs nothing per history entry."""
    jobs: list[dict] = []
    if JobStatus.IN_PROGRESS in wanted:
        jobs += [queue_job(i, JobStatus.IN_PROGRESS) for i in running]
    if JobStatus.PENDING in wanted:
        jobs += [queue_job(i, JobStatus.PENDING) for i in pending]
    if {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED} & set(wanted):
        jobs += [history_job(pid, entry) for pid, entry in history.items()]
    return [j for j in jobs if j["status"] in wanted]


def sort_key(sort_by: str):
    """The sort key of `sort_by` (created_at or execution_duration)."""
    if sort_by == "execution_duration":

        def duration(job: dict) -> int:
            start, end = job.get("execution_start_time", 0), job.get("execution_end_time", 0)
            return end - start if start and end else 0

        return duration
    # jobs queued within one millisecond keep their queue order (the number is their priority)
    return lambda job: (job.get("create_time", 0), job.get("priority", 0))
