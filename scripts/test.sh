#!/usr/bin/env bash
# Run the whole test suite, on a fresh machine too: setup first (idempotent, quick when done),
# then pytest from the project's virtual environment. Extra arguments go to pytest.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$here/scripts/setup.sh"
cd "$here"
# Every toolchain setup installs must be there: a missing one fails its tests instead of skipping.
export MCALLTRACE_REQUIRE_TOOLCHAINS=1
status=0
"$here/.venv/bin/python" -m pytest "$@" || status=$?
if [ "$status" -eq 5 ]; then
    # pytest's "no tests collected" (a -k that matched nothing): not a failure of the code.
    echo "test.sh: pytest collected no tests"
    exit 0
fi
exit "$status"
