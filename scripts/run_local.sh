#!/usr/bin/env bash
# `make run`: the chat app against a vLLM server.
#
# - LLM_URL set: run only the app against that server.
# - LLM_URL unset: start a local vLLM (CPU build, .venv-vllm) first, then the app.
#   LOCAL_MODEL (default Qwen/Qwen2.5-0.5B-Instruct) is served when it is a local model
#   directory or the model hub is reachable; otherwise a tiny random model is built and
#   served instead (answers are gibberish, but every byte of the protocol is real).
#
# Environment: LLM_URL, LOCAL_MODEL, LOCAL_MAX_MODEL_LEN (4096), VLLM_PORT_LOCAL (8000,
# another free port is picked when busy), VLLM_START_TIMEOUT (900 s), VLLM_EXTRA_ARGS,
# VLLM_CPU_KVCACHE_SPACE (GiB, 1), APP_PORT (8501), APP_ADDRESS (127.0.0.1: this machine
# only, and only under loopback names; 0.0.0.0 serves the network). LOCAL_ADMIN=true with a
# kubeconfig gives you the admin page as your kubeconfig's user, on a loopback APP_ADDRESS only.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

app_python=".venv/bin/python"
vllm_python=".venv-vllm/bin/python"
app_port="${APP_PORT:-8501}"
app_address="${APP_ADDRESS:-127.0.0.1}"
run_dir=".run"
vllm_log="$run_dir/vllm.log"
vllm_pid=""
app_pid=""

app_cmd() {
    local host="$app_address"
    case "$host" in
    0.0.0.0 | "::") host=localhost ;;
    *:*) host="[$host]" ;;
    esac
    echo
    echo "Chat app: http://${host}:${app_port}  (LLM_URL=${LLM_URL}; listening on ${app_address})"
    case "${LOCAL_ADMIN:-}" in
    "" | 0 | [Ff]alse | FALSE | [Nn]o | [Oo]ff) ;;
    *)
        # the page itself says so when LOCAL_ADMIN cannot work (e.g. APP_ADDRESS=0.0.0.0)
        echo "Admin page: http://${host}:${app_port}/admin  (LOCAL_ADMIN: as your kubeconfig's user)"
        ;;
    esac
    echo
    app_args=(-m streamlit run webapp/app.py
        --server.port "$app_port" --server.address "$app_address" --server.headless true)
    # Listening on loopback, the app answers only to loopback names: a web page cannot reach
    # it under its own name pointed at 127.0.0.1 (DNS rebinding). LOCAL_ADMIN requires it.
    case "$app_address" in
    127.* | ::1 | localhost)
        local name
        for name in localhost 127.0.0.1 ::1 "$app_address"; do
            app_args+=(--server.allowedHosts "$name")
        done
        ;;
    esac
}

stop_vllm() {
    if [[ -n "$vllm_pid" ]] && kill -0 "$vllm_pid" 2>/dev/null; then
        echo "Stopping local vLLM (pid $vllm_pid)..."
        # vLLM runs in its own session (setsid): signal the whole group, engine included.
        kill -TERM -- "-$vllm_pid" 2>/dev/null || true
        for _ in $(seq 1 30); do
            kill -0 "$vllm_pid" 2>/dev/null || break
            sleep 1
        done
        kill -KILL -- "-$vllm_pid" 2>/dev/null || true
    fi
    vllm_pid=""
}

stop_all() {
    if [[ -n "$app_pid" ]] && kill -0 "$app_pid" 2>/dev/null; then
        kill -TERM "$app_pid" 2>/dev/null || true
        wait "$app_pid" 2>/dev/null || true
    fi
    app_pid=""
    stop_vllm
}

on_signal() {
    stop_all
    exit 130
}

port_is_free() {
    "$app_python" - "$1" <<'PY'
import socket
import sys

with socket.socket() as s:
    try:
        s.bind(("127.0.0.1", int(sys.argv[1])))
    except OSError:
        sys.exit(1)
PY
}

free_port() {
    "$app_python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

hub_reachable() {
    [[ "${HF_HUB_OFFLINE:-0}" != "1" ]] || return 1
    "$vllm_python" - "$1" >/dev/null 2>&1 <<'PY'
import sys

from huggingface_hub import model_info

model_info(sys.argv[1], timeout=5)
PY
}

if [[ -n "${LLM_URL:-}" ]]; then
    app_cmd
    exec "$app_python" "${app_args[@]}"
fi

if [[ ! -x "$vllm_python" ]]; then
    echo "No local vLLM: $vllm_python is missing. Run 'make vllm-venv' or set LLM_URL." >&2
    exit 1
fi

trap stop_all EXIT
trap on_signal INT TERM

local_model="${LOCAL_MODEL:-Qwen/Qwen2.5-0.5B-Instruct}"
max_model_len="${LOCAL_MAX_MODEL_LEN:-4096}"
vllm_args=()
hub_offline=0

if [[ -d "$local_model" ]]; then
    model="$local_model"
    served_name="$(basename "$local_model")"
elif hub_reachable "$local_model"; then
    model="$local_model"
    served_name="$local_model"
else
    hub_offline=1
    echo "Model hub not reachable: building the tiny test model instead of $local_model..."
    model="$("$vllm_python" scripts/make_tiny_model.py | tail -n 1)"
    served_name="tiny-llama"
    max_model_len=1024
    vllm_args+=(--chat-template "$model/chat_template.jinja.txt" --dtype float32)
    export LLM_NOTICE="Offline demo: this is a tiny random test model, not $local_model. Its answers are gibberish; the chat, streaming and errors are real vLLM."
    cat <<EOF

  ====================================================================
  OFFLINE DEMO MODE
  The model hub cannot be reached, so '$local_model' cannot be
  downloaded. vLLM will serve a tiny RANDOM model built on this machine
  ($model).
  Its answers are GIBBERISH. Everything else (streaming, stop, token
  limits, errors, metrics) is the real vLLM protocol.
  Set LOCAL_MODEL=/path/to/model-dir or LLM_URL=http://... for real answers.
  ====================================================================

EOF
fi

port="${VLLM_PORT_LOCAL:-8000}"
if ! port_is_free "$port"; then
    new_port="$(free_port)"
    echo "Port $port is busy; vLLM will listen on $new_port."
    port="$new_port"
fi

if [[ -n "${VLLM_EXTRA_ARGS:-}" ]]; then
    read -r -a extra <<<"$VLLM_EXTRA_ARGS"
    vllm_args+=("${extra[@]}")
fi

mkdir -p "$run_dir"
echo "Starting vLLM: $model as '$served_name' on port $port (log: $vllm_log)"
# Nothing to download for a local directory or the tiny model: keep vLLM off the network.
hf_offline_env="${HF_HUB_OFFLINE:-0}"
if [[ "$hub_offline" == "1" || -d "$local_model" ]]; then
    hf_offline_env=1
fi
VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-1}" \
    HF_HUB_OFFLINE="$hf_offline_env" \
    VLLM_NO_USAGE_STATS=1 \
    setsid "$vllm_python" -m vllm.entrypoints.openai.api_server \
    --model "$model" \
    --served-model-name "$served_name" \
    --max-model-len "$max_model_len" \
    --host 127.0.0.1 \
    --port "$port" \
    "${vllm_args[@]}" >"$vllm_log" 2>&1 </dev/null &
vllm_pid=$!

timeout_s="${VLLM_START_TIMEOUT:-900}"
printf "Waiting for vLLM to load the model"
waited=0
until curl -fsS -o /dev/null "http://127.0.0.1:${port}/health" 2>/dev/null; do
    if ! kill -0 "$vllm_pid" 2>/dev/null; then
        echo
        echo "vLLM exited before it was ready. Last lines of $vllm_log:" >&2
        tail -n 40 "$vllm_log" >&2
        exit 1
    fi
    if ((waited >= timeout_s)); then
        echo
        echo "vLLM not ready after ${timeout_s}s. Last lines of $vllm_log:" >&2
        tail -n 40 "$vllm_log" >&2
        exit 1
    fi
    printf "."
    sleep 2
    waited=$((waited + 2))
done
echo " ready."

export LLM_URL="http://127.0.0.1:${port}"
export LLM_NAME="$served_name"
app_cmd
# In the background + wait, so INT/TERM reach the trap at once (bash defers traps while a
# foreground child runs); the trap then stops the app and vLLM.
"$app_python" "${app_args[@]}" &
app_pid=$!
wait "$app_pid"
