# PostgreSQL from Debian's packages on the local python:3.11-slim base (no registry needed), with the
# interface of the official image that the compose files use: POSTGRES_USER, POSTGRES_PASSWORD and
# POSTGRES_DB make the database on the first start; its files are in /var/lib/postgresql/data.
FROM python:3.11-slim
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-15 >/dev/null \
 && (pg_dropcluster 15 main 2>/dev/null || true) \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb \
 && install -d -o postgres -g postgres -m 700 /var/lib/postgresql/data \
 && install -d -o postgres -g postgres /run/postgresql
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data
USER postgres
VOLUME /var/lib/postgresql/data
EXPOSE 5432
HEALTHCHECK --interval=5s --timeout=5s --retries=12 CMD ["pg_isready", "-q"]
ENTRYPOINT ["postgres-entrypoint"]
