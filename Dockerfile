# The sign-in service's production image. Build it from the repository root:
#
#   docker build -t chime-sign-in .
#
# Only service/ goes in: the local AWS stand-in and the tests stay out (see
# .dockerignore). The runtime stage runs as a numeric non-root user and writes
# nothing to its root filesystem, so it runs with readOnlyRootFilesystem.

# Both stages must share one base: the virtual environment's interpreter is a
# symlink to the base image's Python.
FROM python:3.11-slim AS builder

WORKDIR /build

RUN python -m venv /opt/venv

# The lock changes less often than the code, so this layer survives code edits.
# --require-hashes refuses anything unpinned or tampered with; --only-binary keeps
# compilers out of the build, since every locked package ships wheels.
COPY requirements.lock ./
RUN /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check \
        --require-hashes --only-binary=:all: --no-deps -r requirements.lock

# The project itself, on top of the locked set and without resolving anything
# more. setuptools reads README.md for the package's long description.
COPY pyproject.toml README.md ./
COPY service/ service/
RUN /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check \
        --no-deps .


FROM python:3.11-slim AS runtime

# A fixed numeric id, so Kubernetes can verify runAsNonRoot from the image alone.
RUN groupadd --system --gid 10001 chime-sign-in \
    && useradd --system --uid 10001 --gid chime-sign-in --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin chime-sign-in

# Root owns the installed code, so the service cannot rewrite itself.
COPY --from=builder /opt/venv /opt/venv

# pip compiled the bytecode at install time; the process never writes any.
# PYTHONSAFEPATH keeps the working directory off sys.path.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONSAFEPATH=1 \
    PYTHONUNBUFFERED=1

WORKDIR /app
USER 10001:10001
EXPOSE 8080

# Exec form: Python is PID 1 and receives SIGTERM itself, which starts the drain.
CMD ["python", "-m", "service"]
