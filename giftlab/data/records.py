"""Reading prompt/response records from JSONL or Parquet, with configurable keys.

A record is either {prompt_key: str, response_key: str} (defaults "prompt"/"response"; the
reference trainer's files work with prompt_key="sft_prompt", response_key="solution") or
{messages_key: [{"role", "content"}, ...]} whose last message is the assistant's response.
Every error names the file and line (JSONL) or row (Parquet).
"""

from __future__ import annotations

import json
from pathlib import Path


def _rows(path: Path):
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        for i, row in enumerate(pq.read_table(path).to_pylist()):
            yield f"{path}:row {i}", row
        return
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"{path}:{lineno}: malformed JSON ({err.msg} at column {err.colno})"
                ) from None
            if not isinstance(row, dict):
                raise ValueError(
                    f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}"
                )
            yield f"{path}:{lineno}", row


def read_records(
    path, prompt_key: str = "prompt", response_key: str = "response", messages_key: str = "messages",
    limit: int | None = None,
) -> list[dict]:  # fmt: skip
    """[{"messages": [...prompt turns], "response": str, "where": "file:line", "raw": row}, ...]."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"data file {path} does not exist (make one with `giftlab data`)")
    if path.suffix not in (".jsonl", ".json", ".parquet"):
        raise ValueError(
            f"{path}: unsupported data format {path.suffix!r} (use .jsonl or .parquet)"
        )
    out = []
    for where, row in _rows(path):
        if messages_key in row:
            msgs = row[messages_key]
            if not isinstance(msgs, list) or not msgs or msgs[-1].get("role") != "assistant":
                raise ValueError(
                    f"{where}: {messages_key!r} must be a list ending with an assistant message"
                )
            prompt_msgs, response = [dict(m) for m in msgs[:-1]], msgs[-1].get("content", "")
        else:
            missing = [k for k in (prompt_key, response_key) if k not in row]
            if missing:
                raise ValueError(
                    f"{where}: missing key(s) {missing}; the record has keys {sorted(row)} "
                    f"(set prompt_key/response_key, or give {messages_key!r})"
                )
            prompt_msgs, response = (
                [{"role": "user", "content": str(row[prompt_key])}],
                row[response_key],
            )
        if not isinstance(response, str) or not response.strip():
            raise ValueError(f"{where}: empty response")
        out.append({"messages": prompt_msgs, "response": response, "where": where, "raw": row})
        if limit is not None and len(out) >= limit:
            break
    if not out:
        raise ValueError(f"{path}: no records")
    return out
