"""tools/benchmark.py with torch._dynamo.config.optimize_ddp from $OPTIMIZE_DDP (session 4)."""
import os
import runpy
import sys

import torch._dynamo

torch._dynamo.config.optimize_ddp = os.environ.get("OPTIMIZE_DDP", "1") == "1"
print("optimize_ddp", torch._dynamo.config.optimize_ddp, flush=True)
sys.argv = ["tools/benchmark.py"] + sys.argv[1:]
runpy.run_path("tools/benchmark.py", run_name="__main__")
