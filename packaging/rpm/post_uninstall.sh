systemctl daemon-reload >/dev/null 2>&1 || :
if [ "$1" -eq 0 ]; then
    # Erased (rpm has no separate purge): the agent's state goes; a configuration file
    # that was edited is kept as config.toml.rpmsave by rpm itself.
    rm -rf /var/lib/pictor-agent
fi
