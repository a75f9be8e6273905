# deploybot: `docker build -t deploybot .` then
#   docker run -p 8080:8080 --env-file .env -v deploybot-data:/data deploybot
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, in their own layer: rebuilt only when the pins or the dependency
# list change, not on every source edit. Only the runtime list of pyproject.toml is
# installed (constraints.txt also pins the dev tools).
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -c constraints.txt -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# The project itself; --no-deps so this layer never re-resolves the dependencies above.
COPY README.md ./
COPY bot ./bot
COPY integrations ./integrations
COPY storage ./storage
RUN pip install --no-deps . \
    && rm -rf build *.egg-info

# A fixed non-root uid, so volume ownership is predictable across rebuilds.
RUN groupadd --system --gid 10001 deploybot \
    && useradd --system --uid 10001 --gid deploybot --home-dir /home/deploybot \
       --create-home --shell /usr/sbin/nologin deploybot \
    && mkdir -p /data \
    && chown deploybot:deploybot /data

ENV DATABASE_URL=sqlite:////data/deploybot.db \
    DEPLOYBOT_HOST=0.0.0.0 \
    DEPLOYBOT_PORT=8080

# Declared after the chown: Docker seeds a new named volume with this ownership.
VOLUME /data

USER deploybot
# Away from /app, so what runs is the installed package, as after any other install.
WORKDIR /home/deploybot

EXPOSE 8080

# slim has no curl; Python's urllib raises (exit 1) on a refused connection or a non-2xx.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('DEPLOYBOT_PORT', '8080'), timeout=4)"]

ENTRYPOINT ["deploybot"]
CMD ["serve"]
