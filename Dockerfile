# One image for the web server, the RQ worker and the migrations (chosen by command).
# Build stage: wheels for every dependency, so the final stage needs no compiler.
FROM python:3.11-slim AS build
WORKDIR /src
COPY requirements.txt .
RUN pip wheel --no-cache-dir --wheel-dir /wheels -r requirements.txt

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN useradd --create-home --uid 10001 portal
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index /wheels/* && rm -rf /wheels
WORKDIR /app
COPY app.py ./
COPY portal ./portal
COPY jobs ./jobs
COPY integrations ./integrations
COPY migrations ./migrations
COPY scaffolds ./scaffolds
USER portal
EXPOSE 8000
# Web by default; the worker runs `flask --app app worker`, the migrations `flask --app app db upgrade`.
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "--workers", "4", "app:app"]
