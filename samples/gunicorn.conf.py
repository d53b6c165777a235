"""gunicorn settings for the jwt-headers samples (``gunicorn -c samples/gunicorn.conf.py ...``).

Behind Apache (``apache/jwt-headers.conf``), the app reads headers that prove nothing by
themselves (``OIDC-Id-Token-Payload`` is plain JSON). Two things keep them honest, and both are
set here or next to here:

1. Only Apache can reach gunicorn: it listens on the loopback address, never 0.0.0.0.
2. The app believes such headers only from Apache's address: ``trusted_proxies=127.0.0.1`` in
   ``flask.env``. ``forwarded_allow_ips`` below names the same address for gunicorn's own
   use of forwarded headers; keep the two in step.
"""

# Loopback only: a client that reached this port directly could send OIDC-* headers itself.
# (With Apache on another machine, bind a private address and firewall it to Apache alone.)
bind = "127.0.0.1:8000"
workers = 2

# Header names with underscores.
# mod_auth_openidc names its headers OIDC_id_token_payload and OIDC_access_token. gunicorn >= 22
# drops every request header whose name contains "_" (header_map="drop", the default), because
# in the WSGI environ "OIDC_x" and "OIDC-x" become the same HTTP_OIDC_X key and a client could
# smuggle one past a proxy that only scrubbed the other. The app would then see nothing.
#
# Chosen: keep the safe default, and let Apache send dashed names, which every server keeps:
#     RequestHeader set OIDC-Id-Token-Payload "expr=%{reqenv:OIDC_id_token_payload}"
#     RequestHeader set OIDC-Access-Token "expr=%{reqenv:OIDC_access_token}"
# jwt-headers matches "-" and "_" alike, so user_name_header=OIDC_id_token_payload still works.
header_map = "drop"

# Alternative for gunicorn >= 23 when Apache cannot be changed: accept the underscore names, but
# only from the proxy's address (forwarded_allow_ips):
#     forwarder_headers = "SCRIPT_NAME,PATH_INFO,OIDC_ID_TOKEN_PAYLOAD,OIDC_ACCESS_TOKEN"
# Never header_map = "dangerous": it accepts them from anyone and merges OIDC-x with OIDC_x.

# Apache's address: the only peer whose X-Forwarded-* (and forwarder_headers) gunicorn
# believes. Same value as trusted_proxies in flask.env.
forwarded_allow_ips = "127.0.0.1"

# Access log lines hold the request line and status, never request headers (so no token).
accesslog = "-"
