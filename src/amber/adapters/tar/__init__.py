"""amber's one engine for tar archives, which are hostile input whoever wrote them.

- names: member-name rules and `shown()` for printing a hostile name;
- formats: the Compression enum and the writers' levels, importing no codec; compression:
  sniffing, decompressing, counting and EOF-guarded streams;
- headers: every header checked as it is read (`members`, `next_member`, `open_tar`);
- policy: `Policy`, what an archive may hold; extract: the one extractor (copying: its data
  fast paths; metadata: owners, modes, xattrs, times);
- writer: `TarWriter`.
"""
