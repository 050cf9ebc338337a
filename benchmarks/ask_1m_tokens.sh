#!/usr/bin/env bash
# About a million encoder tokens through `e2llm ask` (issue 13): 1.5 copies of the NIAH
# haystack (data/haystack.txt, from `e2llm data prepare`) with one planted fact at 2/3
# depth. Prints the answer as JSON, then the wall-clock time and peak RSS.
#   bash benchmarks/ask_1m_tokens.sh [work-dir]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d)}
"$root/.venv/bin/python" - "$root/data/haystack.txt" "$work/big.txt" <<'PY'
import sys
text = open(sys.argv[1]).read()
big = text + text[: len(text) // 2]
cut = big.index(". ", len(big) * 2 // 3) + 2
open(sys.argv[2], "w").write(big[:cut] + "The special magic number for Lisbon is 4821937. " + big[cut:])
PY
OMP_NUM_THREADS=1 /usr/bin/time -v "$root/.venv/bin/e2llm" ask --docs "$work/big.txt" \
  "What is the special magic number for Lisbon?" --json 2> "$work/time.log"
grep -E "Elapsed|Maximum resident" "$work/time.log"
