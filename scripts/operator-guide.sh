#!/bin/sh
# Sets espm up on a Puppet server: the README's operator guide as one script, run as root after
# `npm install -g ./espm-agent-*.tgz`. The defaults are Debian 12's puppetserver (the AIO packages'
# paths are noted beside them); set any of them in the environment. It stops at the first failure.
set -eu
: "${CERTNAME_PATTERN:?set CERTNAME_PATTERN to the names espm may sign, e.g. CERTNAME_PATTERN='*.nodes.example.com'}"
ESPM_HOST=${ESPM_HOST:-$(hostname -f 2>/dev/null || hostname)}     # the name Pulumi programs reach espm by
ESPM_PORT=${ESPM_PORT:-8443}
PUPPET_URL=${PUPPET_URL:-https://$ESPM_HOST:8140}
CONFIG_DIR=${CONFIG_DIR:-/opt/espm/etc}
STATE_DIR=${STATE_DIR:-/var/lib/espm}                               # systemd's StateDirectory=espm
PUPPET_CA=${PUPPET_CA:-/var/lib/puppet/ssl/certs/ca.pem}            # AIO: /etc/puppetlabs/puppet/ssl/certs/ca.pem
PUPPET_CONF=${PUPPET_CONF:-/etc/puppet/puppet.conf}                 # AIO: /etc/puppetlabs/puppet/puppet.conf
AUTH_CONF=${AUTH_CONF:-/etc/puppet/puppetserver/conf.d/auth.conf}   # AIO: /etc/puppetlabs/puppetserver/conf.d/auth.conf
REPORT_DIR=${REPORT_DIR:-/var/lib/puppetserver/reports}             # AIO: /opt/puppetlabs/server/data/puppetserver/reports
CA_SIGN=${CA_SIGN:-puppetserver ca sign --certname espm}
RELOAD_PUPPETSERVER=${RELOAD_PUPPETSERVER:-systemctl reload puppetserver}

echo "== 1. espm's own user, in Puppet Server's group (it reads stored reports; Puppet Server reads espm's export)"
id espm >/dev/null 2>&1 || useradd --system --user-group --home-dir "$STATE_DIR" --shell /usr/sbin/nologin espm
usermod -aG puppet espm

echo "== 2. espm's config, PSK and TLS certificate"
mkdir -p "$CONFIG_DIR/certs"
espm-setup -d "$CONFIG_DIR" --state-dir "$STATE_DIR" --host "$ESPM_HOST" -p "$ESPM_PORT" \
  --certname-pattern "$CERTNAME_PATTERN" \
  --puppetserver-url "$PUPPET_URL" --puppetserver-ca "$PUPPET_CA" \
  --puppetserver-cert "$CONFIG_DIR/certs/espm-client.crt" --puppetserver-key "$CONFIG_DIR/certs/espm-client.key" \
  --puppetserver-reportdir "$REPORT_DIR"

echo "== 3. espm's client certificate at Puppet Server (CN espm), signed by the CA's own CLI"
espm enroll -c "$CONFIG_DIR/espm.ini"
sh -c "$CA_SIGN"
espm enroll -c "$CONFIG_DIR/espm.ini"
chown -R espm:espm "$CONFIG_DIR/certs" "$CONFIG_DIR/psk"

echo "== 4. Puppet Server: espm's auth.conf rules, the ENC, espm's autosign policy and stored reports, then a reload"
# Also writes the autosign wrapper $CONFIG_DIR/espm-autosign (root:puppet, 0750), which runs espm autosign.
espm puppet-config -c "$CONFIG_DIR/espm.ini" --auth-conf "$AUTH_CONF" --write "$AUTH_CONF.espm"
cp "$AUTH_CONF" "$AUTH_CONF.before-espm"
mv "$AUTH_CONF.espm" "$AUTH_CONF"
puppet config set --config "$PUPPET_CONF" --section server node_terminus exec
puppet config set --config "$PUPPET_CONF" --section server external_nodes "$(command -v espm) enc -c $CONFIG_DIR/espm.ini"
puppet config set --config "$PUPPET_CONF" --section server autosign "$CONFIG_DIR/espm-autosign"
puppet config set --config "$PUPPET_CONF" --section server reports store
sh -c "$RELOAD_PUPPETSERVER"

echo "== done: review the change with diff $AUTH_CONF.before-espm $AUTH_CONF, then start espm (step 5)"
