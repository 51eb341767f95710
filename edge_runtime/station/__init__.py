"""The station: an inspection log in SQLite (standard library only) and a live web view (the ``[station]`` extra).

``edge-infer ... --log station.db`` records every item; ``edge-log`` answers what the station did;
``--serve HOST:PORT`` shows what it is doing now. The log and its CLI need only the base install; the web view
needs Starlette and uvicorn (``pip install -c constraints.txt '.[station]'`` in the checkout).
"""
