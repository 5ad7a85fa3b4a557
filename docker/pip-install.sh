#!/bin/sh
# Builder stages only: pip install into the image's virtual environment /opt/tangle with Debian's pip (the venv has
# none of its own). Behind a TLS-intercepting proxy, pass its CA as the build secret `build-ca`
# (scripts/build-images.sh does when the host sets PIP_CERT or SSL_CERT_FILE); a secret never lands in a layer.
set -eu
if [ -s /run/secrets/build-ca ]; then
  PIP_CERT=/run/secrets/build-ca
  export PIP_CERT
fi
exec python3 -m pip --python /opt/tangle/bin/python install --no-cache-dir --disable-pip-version-check "$@"
