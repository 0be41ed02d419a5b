# The web app image (chat and admin: APP_MODE chooses). Runs on GKE and on Cloud Run.
# Base image by tag and, once scripts/pin_images.sh has run (images.lock), by digest too.
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, in their own layer: a code change does not reinstall them. The lock
# carries a sha256 hash for every file: pip installs exactly those bytes or fails.
COPY requirements.txt .
RUN pip install --no-cache-dir --require-hashes -r requirements.txt

# Code owned by root and read-only for the app user.
COPY webapp/ webapp/

RUN groupadd --system --gid 10001 app \
    && useradd --system --no-log-init --uid 10001 --gid app --home-dir /tmp --shell /usr/sbin/nologin app

# Streamlit for production: no browser, XSRF protection on, no error details or tracebacks
# on pages, no file watcher, no usage statistics, viewer-only toolbar, and no start-up banner
# (printing it looks up the host's public IP on the internet).
# $PORT: Cloud Run sets it; 8080 otherwise. Writable state only under /tmp (read-only root FS).
ENV PORT=8080 \
    HOME=/tmp \
    DATABASE_URL=sqlite:////tmp/chat.db \
    STREAMLIT_SERVER_HEADLESS=true \
    STREAMLIT_SERVER_ENABLE_XSRF_PROTECTION=true \
    STREAMLIT_SERVER_ENABLE_CORS=true \
    STREAMLIT_CLIENT_SHOW_ERROR_DETAILS=none \
    STREAMLIT_CLIENT_TOOLBAR_MODE=viewer \
    STREAMLIT_SERVER_FILE_WATCHER_TYPE=none \
    STREAMLIT_SERVER_RUN_ON_SAVE=false \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false \
    STREAMLIT_GLOBAL_DEVELOPMENT_MODE=false \
    STREAMLIT_LOGGER_HIDE_WELCOME_MESSAGE=true \
    STREAMLIT_RUNNER_POST_SCRIPT_GC=false

USER 10001:10001
EXPOSE 8080

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/%s_stcore/health' % (os.environ.get('PORT', '8080'), (os.environ.get('STREAMLIT_SERVER_BASE_URL_PATH', '').strip('/') + '/').lstrip('/')), timeout=4)"]

# A shell only to expand $PORT; exec hands PID 1 (and SIGTERM) to Streamlit.
CMD ["sh", "-c", "exec streamlit run webapp/app.py --server.port=${PORT:-8080} --server.address=0.0.0.0"]
