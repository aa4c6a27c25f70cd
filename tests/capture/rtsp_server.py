#!/usr/bin/python3
"""A local RTSP server for the stream tests: GStreamer's RTSP server, run with Debian's python3.

Needs python3-gi, gir1.2-gst-rtsp-server-1.0 and GStreamer's base, good and ugly plugins (x264enc).
It runs under the system Python (where python3-gi lives), not the project's venv, so it uses only the
standard library and GObject introspection.

    /usr/bin/python3 rtsp_server.py PORT [--auth USER:PASSWORD]

Mounts: ``/test`` (H.264 test pattern) and ``/mjpeg`` (motion JPEG); with ``--auth`` both need basic
authentication. Prints ``ready`` once it listens.
"""

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

H264 = (
    "( videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=15/1 ! "
    "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15 bitrate=500 ! "
    "video/x-h264,profile=baseline ! rtph264pay name=pay0 pt=96 config-interval=1 )"
)
MJPEG = (
    "( videotestsrc is-live=true ! video/x-raw,format=I420,width=320,height=240,framerate=15/1 ! "
    "jpegenc quality=80 ! rtpjpegpay name=pay0 pt=26 )"
)


def factory(launch: str, roles: list[str]) -> GstRtspServer.RTSPMediaFactory:
    f = GstRtspServer.RTSPMediaFactory()
    f.set_launch(launch)
    f.set_shared(True)
    for role in roles:
        f.add_role_from_structure(
            Gst.Structure.from_string(
                f"{role}, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
            )[0]
        )
    return f


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("port")
    parser.add_argument("--auth", help="USER:PASSWORD required by every mount")
    args = parser.parse_args()
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(args.port)
    mounts = server.get_mount_points()
    roles = []
    if args.auth:
        user, password = args.auth.split(":", 1)
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "user")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
        server.set_auth(auth)
        roles = ["user"]
    mounts.add_factory("/test", factory(H264, roles))
    mounts.add_factory("/mjpeg", factory(MJPEG, roles))
    if server.attach(None) == 0:
        print("cannot listen", flush=True)
        return 1
    print("ready", flush=True)
    GLib.MainLoop().run()  # SIGTERM/SIGKILL end it
    return 0


if __name__ == "__main__":
    sys.exit(main())
