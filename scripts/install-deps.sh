#!/usr/bin/env bash
# Installs the Debian 12 packages ebats needs to build, test and run its demo.
# Run as root (or through sudo). Safe to run again: apt-get skips what is there.
set -euo pipefail

packages=(
  g++ cmake make pkg-config          # toolchain
  libboost-dev libboost-program-options-dev   # Boost.Uuid (headers), Boost.Program_options
  rapidjson-dev libyaml-cpp-dev libsqlite3-dev libsystemd-dev
  librabbitmq-dev libssl-dev         # the RabbitMQ backend (rabbitmq-c 0.11, OpenSSL for amqps://)
  catch2                             # Catch2 v2, the test framework
  sqlite3 jq procps                  # the demo: inspect the database, format results
  rabbitmq-server openssl            # the RabbitMQ tests and demo: private nodes, TLS test certificates
  php-cli composer                   # the PHP package (clients/php: PHP 8.2 with FFI) and its tests
  python3 python3-pip python3-setuptools python3-jsonschema   # the Python module (clients/python), the schema test
  amqp-tools python3-pika            # the sources test: foreign producers publishing upstream
  clang libclang-rt-14-dev           # the fuzz targets (scripts/fuzz.sh): clang 14 and its libFuzzer runtime
  logrotate                          # rotates the results file (config/logrotate.ebats); its test runs it
  gnuplot-nox                        # bench/run.sh's plots (docs/img/bench-*.png)
  systemd python3-seccomp            # the units tests: systemd-analyze verify and security, sysusers, tmpfiles,
                                     # integration tests under the units' seccomp filters
)

if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages are installed"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq "${packages[@]}"
