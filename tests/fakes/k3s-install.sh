#!/bin/sh
# Test stand-in for the K3S installer (get.k3s.io), run on an sshd test node.
# k3s itself cannot run here, so this records how it was called and writes what
# k3s would write: the k3s binary (answering --version), k3s.yaml pointing at
# the sandbox API server, the node token, the uninstall scripts, a SQLite state.db.
# Faults on demand, by marker files under the node's /var/lib/rancher:
#   fake-install-fail    the installer fails (exit 1, the file's text on stderr)
#   fake-k3s-version     k3s --version reports this version, whatever was installed
set -eu
lib=/var/lib/rancher
start=$(date +%s.%N)
if [ -f "$lib/fake-install-fail" ]; then
  echo "fake installer: $(cat "$lib/fake-install-fail")" >&2
  exit 1
fi
sleep "$(cat "$lib/fake-install-seconds" 2>/dev/null || echo 0)"
mkdir -p /etc/rancher/k3s "$lib/k3s/server/db"

cat > /usr/local/bin/k3s <<EOF
#!/bin/sh
case "\$1" in
  --version) echo "k3s version \$(cat $lib/fake-k3s-version 2>/dev/null || echo ${INSTALL_K3S_VERSION}) (fake)" ;;
  *) echo "fake k3s: \$*" >> $lib/k3s-calls.log ;;
esac
EOF
chmod 755 /usr/local/bin/k3s
printf '#!/bin/sh\necho "$*" >> %s/systemctl.log\n' "$lib" > /usr/local/bin/systemctl
chmod 755 /usr/local/bin/systemctl

if [ "$INSTALL_K3S_EXEC" = server ]; then
  install -m 600 "$lib/fake-k3s.yaml" /etc/rancher/k3s/k3s.yaml
  printf 'K10fake::server:%s\n' "$(cat /etc/rancher/k3s/token)" > "$lib/k3s/server/node-token"
  chmod 600 "$lib/k3s/server/node-token"
  [ -f "$lib/k3s/server/db/state.db" ] || sqlite3 "$lib/k3s/server/db/state.db" \
    "PRAGMA journal_mode=WAL; CREATE TABLE kine (id INTEGER PRIMARY KEY, name TEXT, value BLOB); INSERT INTO kine (name, value) VALUES ('/registry/ns/default', 'x');" >/dev/null
  printf '#!/bin/sh\nrm -f /usr/local/bin/k3s /etc/rancher/k3s/config.yaml /etc/rancher/k3s/token\n' > /usr/local/bin/k3s-uninstall.sh
else
  printf '#!/bin/sh\nrm -f /usr/local/bin/k3s /etc/rancher/k3s/config.yaml /etc/rancher/k3s/token\n' > /usr/local/bin/k3s-agent-uninstall.sh
fi
chmod 755 /usr/local/bin/k3s-*uninstall.sh 2>/dev/null || true

end=$(date +%s.%N)
env_seen=$(env | grep -E '^(INSTALL_K3S|K3S)_' | sort | tr '\n' ' ')
printf '{"node": "%s", "exec": "%s", "version": "%s", "start": %s, "end": %s, "env": "%s", "config_sha": "%s"}\n' \
  "$(hostname)" "$INSTALL_K3S_EXEC" "$INSTALL_K3S_VERSION" "$start" "$end" "$env_seen" \
  "$(sha256sum < /etc/rancher/k3s/config.yaml | cut -d' ' -f1)" >> "$lib/installer-log.jsonl"
