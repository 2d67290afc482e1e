#!/bin/sh
# Installs what espm's tests and demo need on Debian 12 (Puppet 7) or Debian 13 (Puppet 8):
# Debian's puppetserver and puppet-agent, PuppetDB and PostgreSQL, the build tools better-sqlite3
# compiles with, and moto.
# Idempotent: installs only what is missing. Run as root.
set -eu

missing=""
command -v puppetserver >/dev/null 2>&1 || missing="$missing puppetserver"
command -v puppet >/dev/null 2>&1 || missing="$missing puppet-agent"
command -v g++ >/dev/null 2>&1 || missing="$missing g++"
command -v make >/dev/null 2>&1 || missing="$missing make"
command -v python3 >/dev/null 2>&1 || missing="$missing python3"
ls /usr/lib/jvm/java-17-openjdk-*/bin/java >/dev/null 2>&1 || missing="$missing openjdk-17-jre-headless"
command -v unshare >/dev/null 2>&1 || missing="$missing util-linux"
command -v curl >/dev/null 2>&1 || missing="$missing curl"
# debootstrap builds the throw-away Debian root the installAgent test installs puppet-agent into.
command -v debootstrap >/dev/null 2>&1 || missing="$missing debootstrap"
# PuppetDB 7.12, the terminus Puppet Server sends it data with, and PostgreSQL 15 (pg_trgm is in
# postgresql-15) for the PuppetDB suite; packages start no service here (tests run their own).
[ -f /usr/share/puppetdb/puppetdb.jar ] || missing="$missing puppetdb"
[ -f /usr/lib/ruby/vendor_ruby/puppet/reports/puppetdb.rb ] || missing="$missing puppet-terminus-puppetdb"
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$missing postgresql"
# setfacl: the operator guide lets espm's user read Puppet Server's stored reports through an ACL.
command -v setfacl >/dev/null 2>&1 || missing="$missing acl"
# systemd-analyze checks espm's unit file (no systemd needs to run).
command -v systemd-analyze >/dev/null 2>&1 || missing="$missing systemd"

if [ -n "$missing" ]; then
  echo "install-deps: installing$missing"
  # PuppetDB's package would set up a database in the system's PostgreSQL cluster through
  # dbconfig-common; the tests run clusters of their own, so it is told not to.
  echo "puppetdb puppetdb/dbconfig-install boolean false" | debconf-set-selections
  apt-get update -q
  # shellcheck disable=SC2086 # a list of package names
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
fi
# moto (for the RegisteredImage tests and the demo) comes from PyPI, not Debian. Where the system's
# python3 lacks it, it goes into a virtual environment: Debian's python3 refuses pip install system-wide.
if ! python3 -c 'import moto.server' 2>/dev/null; then
  venv="${ESPM_MOTO_VENV:-/var/cache/espm-moto}"
  if [ ! -x "$venv/bin/moto_server" ]; then
    echo "install-deps: installing moto from PyPI into $venv"
    if ! python3 -m venv "$venv" 2>/dev/null; then
      apt-get update -q
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-venv
      python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install -q 'moto[server]>=5.1,<6'
  fi
fi
echo "install-deps: puppetserver $(dpkg-query -W -f='${Version}' puppetserver), puppet-agent $(dpkg-query -W -f='${Version}' puppet-agent 2>/dev/null || dpkg-query -W -f='${Version}' puppet)"
