#!/usr/bin/env bash
# Makes a test certificate authority and certificates for ringkv's TLS.
#
#   deploy/tls/make-certs.sh DIR                  # CA, node and client certificates
#   deploy/tls/make-certs.sh DIR NAME [SAN...]    # one more node certificate, NAME.pem
#
# In DIR (created if missing):
#   ca.pem, ca.key          the cluster CA (made once; kept if present)
#   node.pem, node.key      a node certificate: tls_cert_file / tls_key_file
#   client.pem, client.key  a client certificate (CN "client"): --cert / --key
#
# Every node certificate carries the DNS name "ringkv-node" (the name peers
# check, internode_tls_server_name), "localhost" and 127.0.0.1, and the
# SANs given (IP addresses or DNS names) for clients that dial the node by
# them. Keys are EC P-256 (PKCS#8), valid for 825 days. For production, use
# your own CA and keep ca.key off the nodes.
set -euo pipefail

if [ "$#" -lt 1 ]; then
    echo "usage: $0 DIR [NAME [SAN...]]" >&2
    exit 2
fi
command -v openssl >/dev/null 2>&1 || {
    echo "make-certs.sh: openssl is needed (apt-get install openssl)" >&2
    exit 1
}
dir=$1
name=${2:-node}
shift $(( $# >= 2 ? 2 : 1 ))
mkdir -p "$dir"
umask 077
days=825

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

if [ ! -f "$dir/ca.pem" ]; then
    key "$dir/ca.key"
    openssl req -x509 -new -key "$dir/ca.key" -sha256 -days "$days" \
        -subj "/CN=ringkv test CA $(date +%s)" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out "$dir/ca.pem"
fi

# sign NAME CN SANS EXTENDED_KEY_USAGE
sign() {
    local out=$1 cn=$2 sans=$3 usage=$4 ext
    ext=$(mktemp)
    {
        echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        echo "extendedKeyUsage=$usage"
        [ -n "$sans" ] && echo "subjectAltName=$sans"
    } >"$ext"
    key "$dir/$out.key"
    openssl req -new -key "$dir/$out.key" -subj "/CN=$cn" -out "$dir/$out.csr"
    openssl x509 -req -in "$dir/$out.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
        -CAcreateserial -days "$days" -sha256 -extfile "$ext" -out "$dir/$out.pem" 2>/dev/null
    rm -f "$dir/$out.csr" "$ext"
}

sans="DNS:ringkv-node,DNS:localhost,IP:127.0.0.1"
[ "$name" != node ] && sans="$sans,DNS:$name"
for san in "$@"; do
    if [[ $san =~ ^[0-9.]+$ || $san == *:* ]]; then
        sans="$sans,IP:$san"
    else
        sans="$sans,DNS:$san"
    fi
done
sign "$name" "$name" "$sans" "serverAuth,clientAuth"
[ -f "$dir/client.pem" ] || sign client client "" "clientAuth"
chmod 644 "$dir"/*.pem
echo "certificates in $dir: ca.pem, $name.pem/$name.key, client.pem/client.key"
