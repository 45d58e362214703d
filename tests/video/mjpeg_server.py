"""A live MJPEG-over-HTTP camera on 127.0.0.1 for the tests (what many IP cameras serve at /video.mjpg).

Each connection gets `frames` JPEG frames (grey ones, or `images` in turn), `fps` a second, as
multipart/x-mixed-replace, then the connection ends (a camera that drops); `frames=0` answers the headers
and no frame; after `serves` connections it answers 404. `sent_at` holds the wall-clock time of each frame sent.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np


class MjpegCamera:
    def __init__(
        self,
        frames: int,
        fps: float,
        size: tuple[int, int] = (120, 160),
        images=None,
        serves: int | None = None,
    ) -> None:
        self.frames, self.fps, self.size, self.images = frames, fps, size, images
        self.serves = serves  # connections served before the camera is gone (404); None: no end
        self.connections = 0
        self.sent_at: list[float] = []
        camera = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                camera.connections += 1
                if camera.serves is not None and camera.connections > camera.serves:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                for i in range(camera.frames):
                    if camera.images is not None:
                        image = camera.images[i % len(camera.images)]
                    else:
                        image = np.full((*camera.size, 3), (i * 7) % 256, np.uint8)
                    jpeg = cv2.imencode(".jpg", image)[1].tobytes()
                    part = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg)
                    try:
                        self.wfile.write(part + jpeg + b"\r\n")
                        self.wfile.flush()
                        camera.sent_at.append(time.time())
                    except OSError:  # the client went away
                        return
                    time.sleep(1.0 / camera.fps)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/video.mjpg"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> MjpegCamera:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
