#!/usr/bin/env bash
# Set up (idempotent) and run `mcalltrace demo`: the bundled Go workload, traced. Run as root.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$here/scripts/setup.sh" >/dev/null
exec "$here/.venv/bin/mcalltrace" demo "$@"
