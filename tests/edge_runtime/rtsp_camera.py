"""An RTSP IP camera on loopback for tests: a video file served as H.264 over RTSP by GStreamer's RTSP server.

Runs under the system Python with Debian's GStreamer bindings (``apt-get install -y python3-gi
gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly``), not the project's venv:

    /usr/bin/python3 tests/edge_runtime/rtsp_camera.py VIDEO PORT     # prints "ready rtsp://127.0.0.1:PORT/line"

Each client gets the video from its start, paced in real time, encoded as a camera would (x264, zero latency,
a key frame every second).
"""

from __future__ import annotations

import sys


def main() -> None:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    video, port = sys.argv[1], sys.argv[2]
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f'( filesrc location="{video}" ! decodebin ! videoconvert ! video/x-raw,format=I420 ! '
        "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=6 ! rtph264pay name=pay0 pt=96 )"
    )
    factory.set_shared(False)
    server.get_mount_points().add_factory("/line", factory)
    if server.attach(None) == 0:
        print(f"error: cannot listen on 127.0.0.1:{port}", flush=True)
        sys.exit(1)
    print(f"ready rtsp://127.0.0.1:{port}/line", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
