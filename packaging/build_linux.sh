#!/usr/bin/env bash
# Build the Linux app: a PyInstaller one-folder bundle in dist/farnode-desktop/, its size report
# (target < 200 MB), and an installable package: an AppImage when appimagetool is on PATH, else a .deb
# (dist/farnode-desktop_<version>_<arch>.deb: /opt/farnode-desktop, /usr/bin/farnode-desktop, the .desktop
# entry and hicolor icons). Uses the GUI environment (.venv; never torch).
#
#   packaging/build_linux.sh            # bundle + size report + package
#   packaging/build_linux.sh --no-package
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
PACKAGE=1
[ "${1:-}" = "--no-package" ] && PACKAGE=0
if ! "$PY" -c 'import PyInstaller' 2>/dev/null; then
  echo "PyInstaller is not installed in $PY's environment: run scripts/setup.sh (it installs the [test] extra)." >&2
  exit 1
fi
VERSION=$("$PY" -c 'import farnode_desktop; print(farnode_desktop.__version__)')
start=$(date +%s)
"$PY" -m PyInstaller --noconfirm --log-level WARN --distpath dist --workpath build/pyinstaller packaging/farnode.spec
echo "PyInstaller build: $(( $(date +%s) - start )) s on $(nproc) cores"
BUNDLE=dist/farnode-desktop
"$BUNDLE/farnode-desktop" --version
"$PY" packaging/size_report.py "$BUNDLE" --target-mb 200 || echo "warning: the bundle is over its size target" >&2
[ "$PACKAGE" = 1 ] || exit 0

ARCH=$(dpkg --print-architecture 2>/dev/null || uname -m)
ICONS=resources/icons/app
stage_tree() {  # $1: root of a FHS tree to fill
  local root=$1
  mkdir -p "$root/opt" "$root/usr/bin" "$root/usr/share/applications" "$root/usr/share/icons/hicolor/scalable/apps"
  cp -a "$BUNDLE" "$root/opt/farnode-desktop"
  ln -sf /opt/farnode-desktop/farnode-desktop "$root/usr/bin/farnode-desktop"
  install -m 644 resources/desktop/farnode-desktop.desktop "$root/usr/share/applications/"
  install -m 644 "$ICONS/farnode-desktop.svg" "$root/usr/share/icons/hicolor/scalable/apps/farnode-desktop.svg"
  for png in "$ICONS"/farnode-desktop-*.png; do
    size=$(basename "$png" .png); size=${size##*-}
    mkdir -p "$root/usr/share/icons/hicolor/${size}x${size}/apps"
    install -m 644 "$png" "$root/usr/share/icons/hicolor/${size}x${size}/apps/farnode-desktop.png"
  done
}

if command -v appimagetool >/dev/null 2>&1; then
  APPDIR=build/AppDir
  rm -rf "$APPDIR"; stage_tree "$APPDIR"
  # An AppImage runs from its mount point: AppRun starts the bundle in place.
  printf '#!/bin/sh\nexec "$(dirname "$(readlink -f "$0")")/opt/farnode-desktop/farnode-desktop" "$@"\n' > "$APPDIR/AppRun"
  chmod 755 "$APPDIR/AppRun"
  cp resources/desktop/farnode-desktop.desktop "$APPDIR/"
  cp "$ICONS/farnode-desktop-256.png" "$APPDIR/farnode-desktop.png"
  ARCH=$(uname -m) appimagetool "$APPDIR" "dist/FarNode_Desktop-$VERSION-$(uname -m).AppImage"
  ls -l dist/*.AppImage
  exit 0
fi

echo "appimagetool is not available (it is not packaged on PyPI, npm or Debian): building a .deb instead"
STAGE=build/deb/farnode-desktop
rm -rf "$STAGE"; mkdir -p "$STAGE/DEBIAN"
stage_tree "$STAGE"
SIZE_KB=$(du -sk --exclude=DEBIAN "$STAGE" | cut -f1)
cat > "$STAGE/DEBIAN/control" <<CONTROL
Package: farnode-desktop
Version: $VERSION
Section: net
Priority: optional
Architecture: $ARCH
Maintainer: FarNode Desktop maintainers <maintainers@farnode.invalid>
Installed-Size: $SIZE_KB
Depends: libc6 (>= 2.31), libegl1, libgl1, libfontconfig1, libxkbcommon0, libxkbcommon-x11-0, libxcb-cursor0, libxcb-icccm4, libxcb-keysyms1, libxcb-shape0, libdbus-1-3
Recommends: python3 (>= 3.10), python3-venv, gnome-keyring | kwalletmanager
Description: Lend your NVIDIA GPU to the FarMesh network and get paid for it
 FarNode Desktop serves blocks of a large language model on the FarMesh
 network (FarMesh) from your gaming PC's NVIDIA GPU, pauses itself while you
 play, and shows throughput and earnings. The engine's Python environment is
 set up by the app on first run (python3 and python3-venv are needed for it).
CONTROL
cat > "$STAGE/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
  command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q /usr/share/applications || true
  command -v gtk-update-icon-cache >/dev/null 2>&1 && gtk-update-icon-cache -q -f /usr/share/icons/hicolor || true
fi
exit 0
POSTINST
chmod 755 "$STAGE/DEBIAN/postinst"
DEB="dist/farnode-desktop_${VERSION}_${ARCH}.deb"
start=$(date +%s)
# gzip by default (seconds on 2 cores); DEB_COMPRESS="-Zxz -z6" for a release (3x smaller, minutes)
dpkg-deb --root-owner-group ${DEB_COMPRESS:--Zgzip -z6} --build "$STAGE" "$DEB" >/dev/null
echo "Built $DEB ($(du -h "$DEB" | cut -f1), $(( $(date +%s) - start )) s)"
dpkg-deb --info "$DEB" | sed -n '/Package:/,/Description:/p'
