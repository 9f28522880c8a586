"""The local stack: the whole service on this machine, AWS emulated by moto's server.

Everything it creates comes from ``template.yaml``: tables, streams, queues, buses, the bucket, secrets and
parameters; the API routes, schedules and stream mappings of every function. See ``python -m devstack --help``.
"""

import sys
from pathlib import Path

# The local stack reads schedule expressions with the service's own parser (the core layer's package).
_CORE = str(Path(__file__).resolve().parent.parent / "layers" / "core")
if _CORE not in sys.path:
    sys.path.insert(0, _CORE)
