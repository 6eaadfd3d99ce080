# The Autobahn|Testsuite's wstest, installed on first use: sourced by scripts/autobahn.sh (the
# server cases, wstest -m fuzzingclient) and scripts/autobahn_client.sh (the client cases, wstest
# -m fuzzingserver). Expects `home` (the install cache), `step` and `die`; sets `wstest`, the path
# of the wrapper that runs it. See scripts/autobahn.sh for how and why it is installed this way.

suite_version=25.10.1
wsaccel_version=0.6.2 # supports Python 2; its sdist ships the C files Cython generated
# The install; complete once root/.complete exists. A new recipe needs a new name.
root=$home/wstest-$suite_version-wsaccel-$wsaccel_version
wstest=$root/bin/wstest # the wrapper that runs it

# What pip installs with Python 2.7: autobahntestsuite's dependencies, pinned, transitive ones
# included (their last Python 2 releases), so that a fresh install gets what was tested.
# Not autobahn's `accelerate` extra: pip cannot build wsaccel here (no Python.h); it is compiled
# by hand below.
py2_requirements=(
  txaio==2.1.0 incremental==16.10.1 pyOpenSSL==19.1.0 cryptography==3.3.2 Twisted==19.10.0
  zope.interface==4.6.0 jinja2==2.11.3 markupsafe==1.1.1 Werkzeug==1.0.1 klein==17.10.0
  service_identity==18.1.0 unittest2==1.1.0 six==1.16.0 "autobahn[twisted]==0.10.9"
  setuptools==44.0.0 Automat==22.10.0 PyHamcrest==1.10.1 attrs==21.4.0 cffi==1.15.1
  constantly==15.1.0 enum34==1.1.10 hyperlink==21.0.0 idna==2.10 ipaddress==1.0.23
  pyasn1==0.5.1 pyasn1-modules==0.3.0 pycparser==2.21 typing==3.10.0.0 argparse==1.4.0
  linecache2==1.0.0 traceback2==1.4.0
)

# Prints the URI of the main Debian archive from the system's apt sources.
debian_mirror() {
  if [ -n "${LANES_AUTOBAHN_MIRROR:-}" ]; then
    echo "$LANES_AUTOBAHN_MIRROR"
    return
  fi
  local uri=""
  if [ -r /etc/apt/sources.list.d/debian.sources ]; then
    # deb822: the first URIs field that is not the security archive.
    uri=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' \
      /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$uri" ] && [ -r /etc/apt/sources.list ]; then
    # One-line format: "deb [options] URI suite components".
    uri=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {
      if ($i !~ /security/) { print $i; exit } break } }' /etc/apt/sources.list)
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

install_wstest() {
  local keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  [ -r "$keyring" ] || die "$keyring is missing (apt-get install debian-archive-keyring)"
  if ! command -v apt-get >/dev/null || ! command -v dpkg >/dev/null; then
    die "apt-get and dpkg are needed"
  fi
  command -v cc >/dev/null || die "a C compiler is needed for wsaccel (apt-get install gcc)"

  # Build in a scratch folder next to the install and move it into place only when complete.
  local work=$home/build
  rm -rf "$work" "$root"
  mkdir -p "$work"/apt/lists/partial "$work"/apt/cache/archives/partial "$work"/apt/parts \
    "$work"/debs "$work"/wheels "$work"/tools "$work"/root/site "$work"/dev

  step "download Python 2.7 from Debian bullseye ($(debian_mirror))"
  echo "deb [signed-by=$keyring] $(debian_mirror) bullseye main" >"$work"/apt/sources.list
  # apt with its own sources, lists, cache and preferences: the system's apt state is untouched.
  local apt_opts=(
    -o Dir::Etc::SourceList="$work"/apt/sources.list -o Dir::Etc::SourceParts="$work"/apt/parts
    -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts="$work"/apt/parts
    -o Dir::State::Lists="$work"/apt/lists -o Dir::Cache="$work"/apt/cache
    -o Dir::State::status=/dev/null -o Acquire::Languages=none -o APT::Sandbox::User="$(id -un)"
  )
  apt-get "${apt_opts[@]}" -qq update
  (cd "$work"/debs && apt-get "${apt_opts[@]}" -q download python2.7 python2.7-minimal \
    libpython2.7-stdlib libpython2.7-minimal libpython2.7 libssl1.1 libffi7 libpython2.7-dev)
  local deb
  for deb in "$work"/debs/*.deb; do
    case $deb in
      */libpython2.7-dev_*) dpkg -x "$deb" "$work"/dev ;; # headers, only to build wsaccel
      *) dpkg -x "$deb" "$work"/root/py27 ;;
    esac
  done
  local libdir
  libdir=$(echo "$work"/root/py27/usr/lib/*-linux-gnu)
  [ -e "$libdir/libpython2.7.so.1.0" ] || die "libpython2.7 not found in $work/root/py27"
  libdir=${libdir#"$work"/root/}

  # Runs the unpacked python2.7 from the build folder.
  py2() {
    LD_LIBRARY_PATH="$work/root/$libdir" PYTHONHOME="$work"/root/py27/usr PYTHONNOUSERSITE=1 \
      PYTHONPATH="$work"/tools "$work"/root/py27/usr/bin/python2.7 "$@"
  }
  py2 -c 'import ssl, ctypes, zlib' || die "the unpacked python2.7 does not run"

  step "install pip 20.3.4 and autobahntestsuite $suite_version"
  # The last pip for Python 2, as a wheel: with the machine's pip from PyPI, or where python3
  # has no pip, bullseye's python-pip-whl (unpacked into the Python prefix: that pip looks for the
  # wheels of its unbundled dependencies in <sys.prefix>/share/python-wheels). It only installs
  # pip 20.3.4 from PyPI into tools/.
  local pip_whl
  if python3 -m pip --version >/dev/null 2>&1; then
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 2.7 \
      -d "$work"/wheels pip==20.3.4
    pip_whl=$(echo "$work"/wheels/pip-*.whl)
  else
    (cd "$work"/debs && apt-get "${apt_opts[@]}" -q download python-pip-whl)
    dpkg -x "$work"/debs/python-pip-whl_*.deb "$work"/root/py27
    pip_whl=$(echo "$work"/root/py27/usr/share/python-wheels/pip-*.whl)
  fi
  local pip_opts=(--disable-pip-version-check --no-python-version-warning --no-warn-script-location
    --no-cache-dir -q)
  # pip, setuptools and wheel go to tools/ (used only to install); the rest to root/site.
  py2 "$pip_whl"/pip install "${pip_opts[@]}" --target "$work"/tools \
    pip==20.3.4 setuptools==44.0.0 wheel==0.37.1
  rm -rf "$work"/root/py27/usr/share/python-wheels
  py2 -m pip install "${pip_opts[@]}" --target "$work"/root/site --no-build-isolation \
    --prefer-binary "${py2_requirements[@]}"
  rm -rf "$work"/root/site/bin
  py2 -m pip install "${pip_opts[@]}" --target "$work"/root/site --no-build-isolation \
    --no-deps "autobahntestsuite==$suite_version"
  # Console scripts (unused: the wrapper below runs the module).
  rm -rf "$work"/root/site/bin
  # zope is a namespace package, declared by a .pth file that --target does not honour.
  touch "$work"/root/site/zope/__init__.py

  step "compile wsaccel $wsaccel_version (C UTF-8 validator and XOR masker for autobahn)"
  py2 -m pip download --disable-pip-version-check --no-python-version-warning --no-cache-dir -q \
    --no-deps --no-binary :all: -d "$work"/wheels "wsaccel==$wsaccel_version"
  tar -xzf "$work"/wheels/wsaccel-$wsaccel_version.tar.gz -C "$work"
  local src=$work/wsaccel-$wsaccel_version/wsaccel module
  mkdir -p "$work"/root/site/wsaccel
  cp "$src"/__init__.py "$work"/root/site/wsaccel/
  for module in utf8validator xormask; do
    # -w: the C generated by Cython 0.19.1 (2013) draws warnings from today's compilers.
    cc -shared -fPIC -O2 -fno-strict-aliasing -w -I"$work"/dev/usr/include/python2.7 \
      -I"$work"/dev/usr/include "$src/$module.c" -o "$work/root/site/wsaccel/$module.so"
  done

  # The wrapper that runs wstest with the unpacked Python and the installed packages.
  mv "$work"/root "$root"
  mkdir -p "$root"/bin
  cat >"$wstest" <<EOF
#!/bin/sh
# wstest from Autobahn|Testsuite $suite_version, installed by scripts/autobahn.sh of lanes.
root='$root'
export LD_LIBRARY_PATH="\$root/$libdir\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export PYTHONHOME="\$root/py27/usr" PYTHONPATH="\$root/site" PYTHONNOUSERSITE=1
exec "\$root/py27/usr/bin/python2.7" -m autobahntestsuite.wstest "\$@"
EOF
  chmod +x "$wstest"
  "$wstest" --autobahnversion >/dev/null || die "the installed wstest does not run"
  # autobahn falls back to its pure-Python classes when the import of wsaccel fails.
  LD_LIBRARY_PATH="$root/$libdir" PYTHONHOME="$root"/py27/usr PYTHONPATH="$root"/site \
    PYTHONNOUSERSITE=1 "$root"/py27/usr/bin/python2.7 -c '
from autobahn.websocket import utf8validator, xormasker
assert utf8validator.Utf8Validator.__module__ == "wsaccel.utf8validator"
assert xormasker.createXorMasker.__module__ == "wsaccel.xormask"
' || die "autobahn in the installed wstest does not use wsaccel"
  touch "$root"/.complete
  rm -rf "$work"
}

if [ -e "$root/.complete" ] && [ -x "$wstest" ]; then
  echo "wstest: $wstest (cached)"
else
  started=$SECONDS
  install_wstest
  echo "wstest installed in $((SECONDS - started)) s: $wstest"
fi
"$wstest" --autobahnversion | tr '\n' ' '
echo
