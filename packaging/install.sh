#!/bin/sh
# Installs pictor-agent from this tarball where the .deb and .rpm put it, for images
# built without a package manager. Run as root from the unpacked directory:
#   ./install.sh               install into /
#   DESTDIR=/mnt/image ./install.sh   install into an image tree (no users made, no
#                                     systemctl: that happens when the image boots)
# An existing /etc/pictor-agent/config.toml is kept; the new one is written beside it as
# config.toml.new. Then: set instance_id and base_url in the configuration, put the
# instance token in /etc/pictor-agent/token (mode 0600), and start the service.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
dest=${DESTDIR:-}

put() { # MODE SOURCE TARGET
    mkdir -p "$dest$(dirname "$3")"
    cp "$here/$2" "$dest$3.pictor-new"
    chmod "$1" "$dest$3.pictor-new"
    mv -f "$dest$3.pictor-new" "$dest$3"
}

put 0755 usr/bin/pictor-agent /usr/bin/pictor-agent
put 0644 usr/lib/systemd/system/pictor-agent.service /usr/lib/systemd/system/pictor-agent.service
put 0755 usr/lib/systemd/system-generators/pictor-agent-generator /usr/lib/systemd/system-generators/pictor-agent-generator
put 0644 usr/lib/sysusers.d/pictor-agent.conf /usr/lib/sysusers.d/pictor-agent.conf
put 0644 usr/lib/sysusers.d/pictor-keys.conf /usr/lib/sysusers.d/pictor-keys.conf
put 0644 usr/share/man/man8/pictor-agent.8.gz /usr/share/man/man8/pictor-agent.8.gz
put 0644 usr/share/doc/pictor-agent/README.md /usr/share/doc/pictor-agent/README.md
put 0644 usr/share/doc/pictor-agent/operations.md /usr/share/doc/pictor-agent/operations.md
put 0644 usr/share/doc/pictor-agent/security.md /usr/share/doc/pictor-agent/security.md
put 0644 usr/share/doc/pictor-agent/examples/sshd_config.d/pictor-agent.conf \
    /usr/share/doc/pictor-agent/examples/sshd_config.d/pictor-agent.conf
if [ -e "$dest/etc/pictor-agent/config.toml" ]; then
    put 0640 etc/pictor-agent/config.toml /etc/pictor-agent/config.toml.new
    echo "kept /etc/pictor-agent/config.toml; the shipped one is config.toml.new"
else
    put 0640 etc/pictor-agent/config.toml /etc/pictor-agent/config.toml
fi
[ -z "$dest" ] || exit 0

# The service's user and pictor-keys (the AuthorizedKeysCommand's account), as the
# packages make them: systemd-sysusers where it exists, else the same accounts by hand.
if command -v systemd-sysusers >/dev/null 2>&1; then
    systemd-sysusers pictor-agent.conf pictor-keys.conf
else
    getent passwd pictor-agent >/dev/null || useradd --system --user-group --comment "Pictor agent" \
        --home-dir /var/lib/pictor-agent --no-create-home --shell /usr/sbin/nologin pictor-agent
    getent passwd pictor-keys >/dev/null || useradd --system --user-group \
        --comment "Pictor agent keys for sshd AuthorizedKeysCommand" \
        --home-dir / --no-create-home --shell /usr/sbin/nologin pictor-keys
fi
chown root:pictor-agent /etc/pictor-agent/config.toml
chmod 0640 /etc/pictor-agent/config.toml
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable pictor-agent.service
    # An upgrade is not a crash loop: earlier restarts must not hold it at StartLimitBurst.
    systemctl reset-failed pictor-agent.service 2>/dev/null || true
    systemctl try-restart pictor-agent.service
fi
echo "pictor-agent installed: set instance_id and base_url in /etc/pictor-agent/config.toml,"
echo "  put the instance token in /etc/pictor-agent/token (mode 0600), then start pictor-agent"
