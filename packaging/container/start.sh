#!/bin/sh
# The start script of a RunPod/Vast-style image (docs/containers.md). The first line is
# all pictor-agent needs: the agent in the background, started again if it ever stops
# (nothing else would restart it: no systemd here). It takes its configuration from
# PICTOR_API_URL, PICTOR_INSTANCE_ID and PICTOR_TOKEN_FILE, given to the container.
(while :; do pictor-agent run; sleep 2; done) &

# What the image did before, unchanged: sshd, then keep the container alive.
mkdir -p /run/sshd && /usr/sbin/sshd
exec sleep infinity
