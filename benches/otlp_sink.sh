# Sourced by load.sh and trace_cpu.sh: the OTLP endpoint their traced
# servers export to.
#
# otlp_sink WORK PORT starts nginx on 127.0.0.1:PORT, reading and dropping
# each export and answering an empty 200 (an empty protobuf
# `ExportTraceServiceResponse`). Its config and pid file are in WORK
# (`WORK/nginx.pid`, which the caller's exit trap stops).
otlp_sink() {
    local work="$1" port="$2"
    cat >"$work/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx.error.log warn;
events { worker_connections 256; }
http {
    access_log off;
    client_max_body_size 64m;
    server {
        listen 127.0.0.1:$port;
        location / { default_type application/x-protobuf; return 200 ""; }
    }
}
CONF
    nginx -p "$work" -c "$work/nginx.conf"
}
