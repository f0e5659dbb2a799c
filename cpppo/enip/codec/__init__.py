"""Sans-IO EtherNet/IP and CIP codec: bytes in, frozen records out, records to bytes.

No sockets, threads or global state.  Every malformed input raises
``cpppo.enip.codec.CodecError`` (a ``ValueError``) saying what was wrong.  Both the
server and the clients use it; every message has encode and decode for both directions.

Modules and their main names:

``encapsulation``  the 24-byte header framer.
    ``decode(buffer) -> (consumed, Header | None, payload)`` (0 consumed = need more bytes),
    ``encode(command, payload, session=, status=, context=, options=) -> bytes``,
    ``Command`` / ``Status`` code enums, ``register_session_data()``, ``decode_register_session()``.
``cpf``            Common Packet Format.
    ``Item(type_id, data)``, ``encode_items`` / ``decode_items``;
    ``encode_rr_data(cip_bytes, timeout)`` / ``decode_rr_data(payload) -> RRData(.data)``
    (SendRRData), and the clients' one-step ``rr_frame(cip_bytes, session, context)`` /
    ``rr_message(payload)``; ``encode_unit_data(conn_id, seq, cip_bytes)`` / ``decode_unit_data(payload)
    -> UnitData(.connection, .sequence, .data)`` (SendUnitData); ``IdentityItem`` (List
    Identity item 0x0C), ``CommunicationsService`` (List Services item 0x100), ``LegacyItem``
    (Legacy 0x0001 item), each with ``.encode()`` and ``.decode(bytes)``.
``epath``          path segments ``Logical(kind, value)`` (kind: class, instance, element,
    connection_point, attribute), ``Symbolic(name)``, ``Port(port, link)``, ``Key``, ``Data``;
    ``encode(segments)`` / ``decode(bytes)``, ``encode_sized`` / ``decode_sized`` (with the
    word-count prefix), ``format_path``, ``parse_route_path("1/0" | JSON | "false")``.
``cip``            ``Request(service, path, data)`` and ``Reply(service, status, ext_status,
    data)`` with ``.encode()`` / ``.decode()``; ``UnconnectedSend(message, route_path)``
    (``.request()`` wraps it for @6/1); ``ForwardOpen(..., large=)`` / ``ForwardOpenReply`` /
    ``ForwardOpenFailure``; ``ForwardClose`` / ``ForwardCloseReply``;
    ``encode_multiple(list_of_bytes)`` / ``decode_multiple(data) -> list_of_bytes`` (Multiple
    Service Packet, for requests and replies alike); ``Service`` and ``Status`` code tables,
    ``STATUS_TEXT`` (what each general status means), ``Reply.sts``;
    ``encode_request(service, sized_path_bytes, data)`` and ``unconnected_sender(route_path)``
    (for callers caching encoded paths); ``ServiceError(status, ext_status, reason)``.
``types``          CIP types ``BOOL SINT INT DINT LINT USINT UINT UDINT ULINT REAL LREAL DWORD
    SSTRING STRING`` (CIP 0xD0) and ``LOGIX_STRING`` (the Logix STRING structure, 0xA0 + handle
    0x0FCE); each has ``.code``, ``.size`` (None = variable), ``.encode(values) -> bytes``,
    ``.decode(bytes) -> list``; ``TYPES`` (by tag-spec name; "STRING" is the Logix
    structure), ``ELEMENTARY`` (every elementary type by name, with BYTE, WORD, LWORD and
    "STRING" the CIP STRING: the names of client casts) and ``BY_CODE``;
    ``encode_padded_strings`` / ``decode_padded_strings`` (CIP STRINGs padded to even sizes,
    as upstream cpppo keeps STRING tags).
``logix``          data of the Logix services: ``ReadTag(elements)``,
    ``ReadTagFragmented(elements, offset)``, ``TypedData(type_code, data, handle)`` (their
    replies), ``WriteTag(type_code, elements, data, handle)``, ``WriteTagFragmented(...,
    offset, ...)``, ``ReadModifyWriteTag(size, or_mask, and_mask)`` (and its empty
    ``ReadModifyWriteReply``), ``GetInstanceAttributeList(attributes)`` with ``SymbolEntry`` /
    ``encode_symbol_entry`` / ``decode_symbol_entries`` for its reply; ``split_typed(data)``
    (reply data as clients report it: type, handle, value bytes).

A Read Tag of ``SCADA[1]`` wrapped for a routing controller::

    from cpppo.enip.codec import cip, cpf, encapsulation, epath, logix
    read = cip.Request(0x4C, (epath.Symbolic("SCADA"), epath.Logical("element", 1)),
                       logix.ReadTag(1).encode())
    send = cip.UnconnectedSend(read.encode(), (epath.Port(1, 0),)).request()
    frame = encapsulation.encode(encapsulation.Command.SEND_RR_DATA,
                                 cpf.encode_rr_data(send.encode()), session=handle)
"""

from cpppo.enip.codec.errors import CodecError

__all__ = ["CodecError"]
