#!/bin/sh
# Test stand-in for the K3S installer (get.k3s.io) on a real systemd guest (a Lima VM).
# The K3S binary cannot be downloaded here; everything the real installer leaves around it is
# real: /usr/local/bin/k3s (a stand-in that answers --version and otherwise stays running), the
# k3s or k3s-agent systemd unit enabled and started with the real systemctl, the kubeconfig and
# node token on a server, the uninstall script. It reads the config.yaml and token file the
# toolkit wrote, as K3S would, and fails when they are missing. Records each run in
# /var/lib/rancher/installer-log.jsonl.
set -eu
lib=/var/lib/rancher
config=/etc/rancher/k3s/config.yaml
[ -s "$config" ] || { echo "stand-in installer: $config is missing" >&2; exit 1; }
token_file=$(sed -n 's/^token-file: *//p' "$config")
[ -s "$token_file" ] || { echo "stand-in installer: token file $token_file is missing" >&2; exit 1; }
mkdir -p "$lib/k3s/server/db" /etc/rancher/k3s

cat > /usr/local/bin/k3s <<EOF2
#!/bin/sh
case "\$1" in
  --version) echo "k3s version ${INSTALL_K3S_VERSION} (stand-in)" ;;
  *) exec sleep infinity ;;
esac
EOF2
chmod 755 /usr/local/bin/k3s

if [ "$INSTALL_K3S_EXEC" = server ]; then unit=k3s; else unit=k3s-agent; fi
cat > "/etc/systemd/system/$unit.service" <<EOF2
[Unit]
Description=Lightweight Kubernetes (stand-in)
After=network-online.target

[Service]
Type=simple
ExecStart=/usr/local/bin/k3s $INSTALL_K3S_EXEC
Restart=always

[Install]
WantedBy=multi-user.target
EOF2
systemctl daemon-reload
systemctl enable --now "$unit.service" >/dev/null 2>&1

if [ "$INSTALL_K3S_EXEC" = server ] && [ -f "$lib/standin-k3s.yaml" ]; then
  install -m 600 "$lib/standin-k3s.yaml" /etc/rancher/k3s/k3s.yaml # the test's API server, as K3S's own would be
elif [ "$INSTALL_K3S_EXEC" = server ]; then
  cat > /etc/rancher/k3s/k3s.yaml <<'EOF2'
apiVersion: v1
kind: Config
clusters:
- name: default
  cluster: {server: "https://127.0.0.1:6443", certificate-authority-data: c3RhbmQtaW4=}
users:
- name: default
  user: {client-certificate-data: c3RhbmQtaW4=, client-key-data: c3RhbmQtaW4=}
contexts:
- name: default
  context: {cluster: default, user: default}
current-context: default
EOF2
  chmod 600 /etc/rancher/k3s/k3s.yaml
fi
if [ "$INSTALL_K3S_EXEC" = server ]; then
  printf 'K10standin::server:%s\n' "$(cat "$token_file")" > "$lib/k3s/server/node-token"
  chmod 600 "$lib/k3s/server/node-token"
  [ -f "$lib/k3s/server/db/state.db" ] || sqlite3 "$lib/k3s/server/db/state.db" \
    "PRAGMA journal_mode=WAL; CREATE TABLE kine (id INTEGER PRIMARY KEY, name TEXT, value BLOB); INSERT INTO kine (name, value) VALUES ('/registry/ns/default', 'x');" >/dev/null
fi
printf '#!/bin/sh\nsystemctl disable --now %s.service\nrm -f /usr/local/bin/k3s /etc/systemd/system/%s.service %s\n' \
  "$unit" "$unit" "$config" > "/usr/local/bin/$unit-uninstall.sh"
chmod 755 "/usr/local/bin/$unit-uninstall.sh"
printf '{"node": "%s", "exec": "%s", "version": "%s", "user": "%s"}\n' \
  "$(hostname)" "$INSTALL_K3S_EXEC" "$INSTALL_K3S_VERSION" "$(id -un)" >> "$lib/installer-log.jsonl"
