"""Reading prompt/response records from JSONL or Parquet, with configurable keys.

A record is either {prompt_key: str, response_key: str} (defaults "prompt"/"response"; the
reference trainer's files work with prompt_key="sft_prompt", response_key="solution") or
{messages_key: [{"role", "content"}, ...]} whose last message is the assistant's response.
Prompt-only readers (RL, eval) take records without a response. Every error names the file and
line (JSONL) or row (Parquet) and what was expected.
"""

from __future__ import annotations

import json
from pathlib import Path

from giftlab.errors import InputError

ROLES = ("system", "user", "assistant")


def _rows(path: Path):
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as err:  # pyarrow raises its own kinds for a damaged file
            raise InputError(f"{path}: not a readable Parquet file ({err})") from None
        for i, row in enumerate(table.to_pylist()):
            yield f"{path}:row {i}", row
        return
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise InputError(
                    f"{path}:{lineno}: not UTF-8 text (byte {err.start}: {err.reason})"
                ) from None
            if not line.strip():
                continue
            try:
                row = json.loads(line, object_pairs_hook=_unique_keys)
            except json.JSONDecodeError as err:
                raise InputError(
                    f"{path}:{lineno}: malformed JSON ({err.msg} at column {err.colno})"
                ) from None
            except _DuplicateKey as err:
                raise InputError(
                    f"{path}:{lineno}: the key {err.args[0]!r} appears twice in one record "
                    "(JSON keeps the last silently); keep one"
                ) from None
            if not isinstance(row, dict):
                raise InputError(
                    f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}"
                )
            try:  # a lone surrogate ("\ud800") parses, then fails in the tokenizer
                json.dumps(row, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError as err:
                raise InputError(
                    f"{path}:{lineno}: holds a lone UTF-16 surrogate ({err.object[err.start]!r}), "
                    "which is not text: fix or remove it"
                ) from None
            yield f"{path}:{lineno}", row


class _DuplicateKey(ValueError):
    pass


def _unique_keys(pairs):
    """json's object hook: a dict, refusing a key given twice (json.loads keeps the last)."""
    out = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(k)
        out[k] = v
    return out


def _messages(where: str, key: str, msgs) -> list[dict]:
    if not isinstance(msgs, list) or not msgs:
        raise InputError(f"{where}: {key!r} must be a non-empty list of messages")
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise InputError(
                f"{where}: {key}[{i}] must be an object {{'role': ..., 'content': ...}}, "
                f"got {type(m).__name__} {m!r:.40}"
            )
        if m.get("role") not in ROLES:
            raise InputError(
                f"{where}: {key}[{i}].role must be one of {ROLES}, got {m.get('role')!r}"
            )
        content = m.get("content")
        if not isinstance(content, str) or not content.strip():
            raise InputError(f"{where}: {key}[{i}] ({m['role']}) has no text content")
        if i and m["role"] == "assistant" and msgs[i - 1].get("role") == "assistant":
            raise InputError(
                f"{where}: {key}[{i - 1}] and {key}[{i}] are two assistant turns in a row; merge "
                "them into one (only the last assistant turn is the response trained on)"
            )
    return [{"role": m["role"], "content": m["content"]} for m in msgs]


def read_records(
    path,
    prompt_key: str = "prompt",
    response_key: str = "response",
    messages_key: str = "messages",
    limit: int | None = None,
    need_response: bool = True,
) -> list[dict]:
    """[{"messages": [...prompt turns], "response": str | None, "where": "file:line", "raw": row}].

    need_response=False reads prompts only (RL and eval): a record's response, when present,
    is kept but not required.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"data file {path} does not exist (make one with `giftlab data`)")
    if path.is_dir():
        raise InputError(f"data file {path} is a folder; give a .jsonl or .parquet file")
    if path.suffix not in (".jsonl", ".json", ".parquet"):
        raise InputError(
            f"{path}: unsupported data format {path.suffix!r} (use .jsonl or .parquet)"
        )
    if limit is not None and limit < 0:
        raise InputError(f"limit must be >= 0, got {limit}")
    out = []
    for where, row in _rows(path):
        if messages_key in row:
            msgs = _messages(where, messages_key, row[messages_key])
            if msgs[-1]["role"] == "assistant":
                prompt_msgs, response = msgs[:-1], msgs[-1]["content"]
            elif need_response:
                raise InputError(f"{where}: {messages_key!r} must end with an assistant message")
            else:
                prompt_msgs, response = msgs, None
            if not prompt_msgs:
                raise InputError(f"{where}: {messages_key!r} has no prompt before the response")
        else:
            required = (prompt_key, response_key) if need_response else (prompt_key,)
            missing = [k for k in required if k not in row]
            if missing:
                raise InputError(
                    f"{where}: missing key(s) {missing}; the record has keys {sorted(row)} "
                    f"(set prompt_key/response_key, or give {messages_key!r})"
                )
            prompt = row[prompt_key]
            if not isinstance(prompt, str) or not prompt.strip():
                raise InputError(
                    f"{where}: {prompt_key!r} must be non-empty text, got {prompt!r:.40}"
                )
            prompt_msgs, response = [{"role": "user", "content": prompt}], row.get(response_key)
        if need_response and (not isinstance(response, str) or not response.strip()):
            raise InputError(
                f"{where}: {response_key!r} must be non-empty text, got {response!r:.40}"
            )
        out.append({"messages": prompt_msgs, "response": response, "where": where, "raw": row})
        if limit and len(out) >= limit:
            break
    if not out:
        raise InputError(f"{path}: no records")
    return out
