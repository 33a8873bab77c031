#!/bin/bash
# Stand-in for Kafka's tool, for the compose healthcheck: succeeds when the
# broker accepts connections on --bootstrap-server.
server=localhost:9092
while [ $# -gt 0 ]; do
  case $1 in --bootstrap-server) server=$2; shift 2 ;; *) shift ;; esac
done
exec 3<>"/dev/tcp/${server%:*}/${server##*:}"
