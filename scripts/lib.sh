# Shared by scripts/build-images.sh and scripts/run-example.sh (sourced).

# host_python X.Y: a host python of that major.minor with pip, to build
# wheels for an image whose python is X.Y (the wheels must match its ABI).
host_python() {
    local py
    for py in /usr/bin/python3 "/usr/bin/python$1" python3 "python$1"; do
        command -v "$py" >/dev/null 2>&1 || continue
        [ "$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$1" ] || continue
        "$py" -m pip --version >/dev/null 2>&1 || continue
        command -v "$py"
        return
    done
    return 1
}
