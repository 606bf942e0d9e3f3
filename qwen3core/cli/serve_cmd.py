"""``qwen3 serve``: an OpenAI-compatible HTTP server with continuous batching.

Binds 127.0.0.1 unless ``--host`` says otherwise; ``--api-key`` (or QWEN3CORE_API_KEY)
requires ``Authorization: Bearer KEY`` on every ``/v1`` request. See docs/serving.md.
"""

from __future__ import annotations

import argparse
import os
import sys

from qwen3core.cli.common import add_model_options, add_quantize_options
from qwen3core.cli.generate_cmd import add_tokenizer_option, load_from_args
from qwen3core.errors import Qwen3CoreError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve the model over an OpenAI-compatible HTTP API",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_options(p)
    add_tokenizer_option(p)
    add_quantize_options(p)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--api-key", default=os.environ.get("QWEN3CORE_API_KEY"), metavar="KEY",
                   help="require 'Authorization: Bearer KEY' (default: $QWEN3CORE_API_KEY, "
                        "else no key)")
    p.add_argument("--served-model-name", default=None, metavar="NAME",
                   help="the model id clients send (default: --model)")
    p.add_argument("--max-batch", type=int, default=8, metavar="N",
                   help="most requests decoding at once (default 8)")
    p.add_argument("--max-waiting", type=int, default=64, metavar="N",
                   help="most requests waiting for a batch slot; more are answered 429 "
                        "(default 64)")
    p.add_argument("--max-context", type=int, default=4096, metavar="N",
                   help="most tokens (prompt + generated) per request (default 4096, at most "
                        "the model's context)")
    p.add_argument("--max-prompt-tokens", type=int, default=None, metavar="N",
                   help="most prompt tokens per request (default: --max-context)")
    p.add_argument("--max-body-bytes", type=int, default=1 << 20, metavar="N",
                   help="largest request body accepted (default 1 MiB)")
    p.add_argument("--prefill-chunk", type=int, default=256, metavar="N",
                   help="prompt tokens prefilled per step, so long prompts never stall "
                        "running streams (default 256)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from qwen3core.serving.app import ServerConfig, create_app
    except ImportError as exc:
        raise Qwen3CoreError(f"qwen3 serve needs FastAPI and uvicorn ({exc.name} is missing): "
                             "pip install 'qwen3core[serve]'") from None
    from qwen3core.serving.engine import Engine
    from qwen3core.serving.scheduler import Scheduler

    loaded = load_from_args(args)
    if loaded.tokenizer is None:
        raise Qwen3CoreError(f"{loaded.source} has no tokenizer; the server needs one: pass "
                             f"--tokenizer DIR")
    scheduler = Scheduler(loaded.model, max_batch=args.max_batch, max_waiting=args.max_waiting,
                          prefill_chunk=args.prefill_chunk, max_context=args.max_context)
    config = ServerConfig(model_name=args.served_model_name or args.model,
                          api_key=args.api_key or None, max_body_bytes=args.max_body_bytes,
                          max_prompt_tokens=args.max_prompt_tokens,
                          generation_config=dict(loaded.generation_config))
    app = create_app(Engine(scheduler), loaded.tokenizer, config)
    quantized = f", quantized {args.quantize}" if args.quantize else ""
    print(f"qwen3 serve: {loaded.source} ({loaded.dtype}, {loaded.device}{quantized}) as "
          f"{config.model_name!r} on http://{args.host}:{args.port}/v1"
          + (" (api key required)" if config.api_key else ""), file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
