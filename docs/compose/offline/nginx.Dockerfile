# nginx from Debian's packages on the local python:3.11-slim base; the compose file mounts its
# nginx.conf over the default one.
FROM python:3.11-slim
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx >/dev/null \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb \
 && ln -sf /dev/stdout /var/log/nginx/access.log && ln -sf /dev/stderr /var/log/nginx/error.log
EXPOSE 8321
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
