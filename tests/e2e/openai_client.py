#!/usr/bin/env python3
"""Check `frontdesk serve`'s OpenAI-compatible API with the official `openai` client.

usage: python3 tests/e2e/openai_client.py BASE_URL [API_KEY]
env:   FD_MODEL     the bare model id the server runs (default: the first chat model listed)
       FD_QUESTION  the support question (default "How long does a refund take?")

Runs every check, prints each failure on stderr and one JSON summary line on stdout;
exits 0 when all pass, 1 when any fails, 2 when the openai package is missing.
"""

import json
import math
import os
import sys

try:
    import openai
    from openai import OpenAI
except ImportError:
    print("the openai package is missing: pip install openai", file=sys.stderr)
    sys.exit(2)

SUPPORT_MODEL = "frontdesk-support"
EMBEDDING_MODEL = "all-minilm-l6-v2"
EMBEDDING_DIM = 384


class CheckFailed(Exception):
    pass


def check(condition, message):
    if not condition:
        raise CheckFailed(message)


def extra_field(resp, name):
    """A non-OpenAI top-level field of a response (the client keeps unknown fields as extras)."""
    extras = getattr(resp, "model_extra", None) or {}
    if name in extras:
        return extras[name]
    return resp.to_dict().get(name)


def collect_stream(stream):
    """Join a streamed completion's content; return (text, chunks with choices)."""
    pieces, chunks = [], []
    for chunk in stream:
        if not chunk.choices:  # a usage-only chunk has no choices
            continue
        chunks.append(chunk)
        delta = chunk.choices[0].delta
        if delta is not None and delta.content:
            pieces.append(delta.content)
    return "".join(pieces), chunks


def check_models(client, model):
    ids = [m.id for m in client.models.list()]
    check(SUPPORT_MODEL in ids, f"/v1/models lacks {SUPPORT_MODEL!r}: {ids}")
    check(model in ids, f"/v1/models lacks the model {model!r}: {ids}")
    check(any(i.startswith("all-minilm") for i in ids), f"/v1/models lists no all-minilm embedding model: {ids}")
    return {"ids": ids}


def check_chat(client, model):
    resp = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Say hello."}], max_tokens=16, temperature=0
    )
    check(resp.choices, "the completion has no choices")
    choice = resp.choices[0]
    check(choice.message.role == "assistant", f"message.role is {choice.message.role!r}, not 'assistant'")
    check((choice.message.content or "").strip(), "message.content is empty")
    check(choice.finish_reason in ("stop", "length"), f"finish_reason is {choice.finish_reason!r}")
    check(resp.usage is not None, "the completion has no usage")
    check(resp.usage.prompt_tokens > 0, f"usage.prompt_tokens is {resp.usage.prompt_tokens}")
    check(resp.usage.completion_tokens > 0, f"usage.completion_tokens is {resp.usage.completion_tokens}")
    check(resp.usage.completion_tokens <= 16, f"usage.completion_tokens {resp.usage.completion_tokens} > max_tokens 16")
    return {"text": choice.message.content, "finish_reason": choice.finish_reason,
            "usage": [resp.usage.prompt_tokens, resp.usage.completion_tokens]}


def check_chat_stream(client, model):
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Say hello."}], max_tokens=16, temperature=0, stream=True
    )
    text, chunks = collect_stream(stream)
    check(chunks, "the stream carried no chunks with choices")
    check(text.strip(), "the streamed content is empty")
    last = chunks[-1].choices[0].finish_reason
    check(last in ("stop", "length"), f"the last chunk's finish_reason is {last!r}, not 'stop' or 'length'")
    early = [c.choices[0].finish_reason for c in chunks[:-1] if c.choices[0].finish_reason]
    check(not early, f"a finish_reason arrived before the last chunk: {early}")
    return {"text": text, "chunks": len(chunks), "finish_reason": last}


def check_support(client, question):
    resp = client.chat.completions.create(model=SUPPORT_MODEL, messages=[{"role": "user", "content": question}])
    check(resp.choices, "the support completion has no choices")
    content = resp.choices[0].message.content or ""
    check(content.strip(), "the support answer is empty")
    extra = extra_field(resp, "frontdesk")
    check(isinstance(extra, dict), f"the response has no 'frontdesk' object: {resp.to_dict()}")
    check(isinstance(extra.get("citations"), list), f"frontdesk.citations is not a list: {extra}")
    check(isinstance(extra.get("handoff"), bool), f"frontdesk.handoff is not a bool: {extra}")
    check(extra["handoff"] is False, f"the question was handed off: {content}")
    check(extra["citations"], f"the answer has no citations: {content}")
    return {"text": content, "citations": [c.get("path") if isinstance(c, dict) else c for c in extra["citations"]]}


def check_support_stream(client, question):
    stream = client.chat.completions.create(
        model=SUPPORT_MODEL, messages=[{"role": "user", "content": question}], stream=True
    )
    text, chunks = collect_stream(stream)
    check(text.strip(), "the streamed support answer is empty")
    return {"text": text, "chunks": len(chunks)}


def check_embeddings(client):
    resp = client.embeddings.create(model=EMBEDDING_MODEL, input=["refund", "delivery time"])
    check(len(resp.data) == 2, f"{len(resp.data)} embeddings for 2 inputs")
    for expected_index, item in enumerate(sorted(resp.data, key=lambda d: d.index)):
        check(item.index == expected_index, f"embedding indices are {[d.index for d in resp.data]}, not [0, 1]")
        vector = item.embedding
        check(len(vector) == EMBEDDING_DIM, f"embedding {item.index} has {len(vector)} values, not {EMBEDDING_DIM}")
        check(all(isinstance(x, float) for x in vector), f"embedding {item.index} holds non-floats")
        norm = math.sqrt(sum(x * x for x in vector))
        check(abs(norm - 1.0) <= 1e-3, f"embedding {item.index} has L2 norm {norm:.6f}, not 1")
    return {"count": len(resp.data), "dim": len(resp.data[0].embedding)}


def check_unknown_model(client):
    try:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}], max_tokens=1)
    except openai.NotFoundError:
        return {"status": 404}
    except openai.APIStatusError as error:
        raise CheckFailed(f"an unknown model answered HTTP {error.status_code}, not 404")
    raise CheckFailed("an unknown model was accepted")


def check_wrong_key(base_url, api_key):
    client = OpenAI(base_url=base_url + "/v1", api_key=api_key + "-wrong", max_retries=0)
    try:
        client.models.list()
    except openai.AuthenticationError:
        return {"status": 401}
    except openai.APIStatusError as error:
        raise CheckFailed(f"a wrong API key answered HTTP {error.status_code}, not 401")
    raise CheckFailed("a wrong API key was accepted")


def default_model(client):
    """The first listed model that is neither the support pipeline nor an embedder."""
    for m in client.models.list():
        if m.id != SUPPORT_MODEL and not m.id.startswith("all-minilm"):
            return m.id
    raise CheckFailed("FD_MODEL is not set and /v1/models lists no chat model")


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    base_url = sys.argv[1].rstrip("/")
    api_key = sys.argv[2] if len(sys.argv) == 3 else ""
    question = os.environ.get("FD_QUESTION", "How long does a refund take?")
    # Small models on a CPU can be slow; one retry covers a transient 429 from a busy server.
    client = OpenAI(base_url=base_url + "/v1", api_key=api_key or "none", timeout=600, max_retries=1)

    results, failures = {}, []
    try:
        model = os.environ.get("FD_MODEL") or default_model(client)
    except (CheckFailed, openai.OpenAIError) as error:
        print(f"cannot pick a model: {error}", file=sys.stderr)
        print(json.dumps({"ok": False, "failed": ["models"]}))
        return 1

    checks = [
        ("models", lambda: check_models(client, model)),
        ("chat", lambda: check_chat(client, model)),
        ("chat_stream", lambda: check_chat_stream(client, model)),
        ("support", lambda: check_support(client, question)),
        ("support_stream", lambda: check_support_stream(client, question)),
        ("embeddings", lambda: check_embeddings(client)),
        ("unknown_model", lambda: check_unknown_model(client)),
    ]
    if api_key:
        checks.append(("wrong_key", lambda: check_wrong_key(base_url, api_key)))

    for name, run in checks:
        try:
            results[name] = run()
        except CheckFailed as error:
            failures.append(name)
            print(f"FAIL {name}: {error}", file=sys.stderr)
        except openai.OpenAIError as error:
            failures.append(name)
            print(f"FAIL {name}: {type(error).__name__}: {error}", file=sys.stderr)

    print(json.dumps({"ok": not failures, "model": model, "failed": failures, "checks": results}))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
