"""amber's one engine for tar archives, which are hostile input whoever wrote them.

- names: member-name rules and `shown()` for printing a hostile name;
- compression: the Compression enum, sniffing, decompressing, counting and EOF-guarded streams;
- headers: every header checked as it is read (`members`, `next_member`, `open_tar`);
- extract: the extractor, driven by a `Policy` (copying: its data fast paths);
- writer: `TarWriter`.
"""
