"""The live status page: what each stream shows (:mod:`.view`), the runtime's state gathered for the page
(:mod:`.snapshot`), and the HTTP server that serves the page and its JSON (:mod:`.server`).
"""
