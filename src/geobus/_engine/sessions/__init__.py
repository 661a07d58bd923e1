"""Session receivers across two namespaces: one owner, each producer's order, replicated state.

- ``channel``: one namespace's SDK session receiver under geobus's deadlines.
- ``ownership``: the session held in both namespaces (and the fleet's store) at once.
- ``receiver``: ``DedupSessionReceiver``, the async receiver; ``loops`` its background work
  (and how much it fetches); ``settling`` its settlements; ``extras`` its deferral and peek.
- ``session``: ``receiver.session``, the SDK's session surface; ``state`` the replicated state.
- ``build``: how a ``GeoServiceBusClient`` builds one.
"""
