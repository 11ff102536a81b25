# Kamailio from Debian's packages, for docker-compose.yml: its module path is the one
# sip_examples/kamailio/kamailio.cfg names. Checked by tests/deploy (hadolint).
FROM debian:bookworm-slim
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends kamailio \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10002 --no-create-home --shell /usr/sbin/nologin sipproxy
USER 10002
EXPOSE 5060/udp
ENTRYPOINT ["kamailio"]
# foreground, log to stderr; its runtime files in /tmp (not root: no /run/kamailio)
CMD ["-f", "/etc/kamailio/kamailio.cfg", "-DD", "-E", "-Y", "/tmp", "-P", "/tmp/kamailio.pid"]
