# The service's user, and pictor-keys: the account sshd runs the AuthorizedKeysCommand as.
systemd-sysusers /usr/lib/sysusers.d/pictor-agent.conf /usr/lib/sysusers.d/pictor-keys.conf
chown root:pictor-agent /etc/pictor-agent/config.toml 2>/dev/null || :
chmod 0640 /etc/pictor-agent/config.toml 2>/dev/null || :
if [ "$1" -eq 1 ]; then
    systemctl enable pictor-agent.service >/dev/null 2>&1 || :
    systemctl start pictor-agent.service >/dev/null 2>&1 || :
else
    systemctl try-restart pictor-agent.service >/dev/null 2>&1 || :
fi
if [ ! -f /etc/pictor-agent/token ]; then
    echo "pictor-agent: set instance_id and base_url in /etc/pictor-agent/config.toml and put the"
    echo "  instance token in /etc/pictor-agent/token (mode 0600), then: systemctl start pictor-agent"
fi
