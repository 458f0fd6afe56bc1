"""guard: wa.inbound -> chat.turns (or pipeline.dlq), deciding what deserves an answer.

Per record, in order: decode (bad bytes go to the DLQ with the reason, and the next
record is processed); drop status posts, newsletters and ciphertext placeholders; drop
duplicates (WhatsApp emits a message again after decryption: the ciphertext placeholder
is skipped without being remembered, so the decrypted message with the same id still
counts once); an edit, revoke or reaction changes the open burst or is only recorded
(see below); a message the owner typed on the phone pauses the bot in that chat (human
takeover) and drops what was waiting; our own messages are never answered; old
messages, blocked or not-allowed chats, disabled or paused chats, system messages
(:data:`FATES`) and group messages that neither mention us nor start with the prefix are
ignored; a message the bot cannot read (a voice note, a sticker, a photo without a
caption) gets at most one ``unreadable_notice`` per chat and UTC day of its time. What
is left joins the chat's open burst, which becomes one Turn when the chat has been quiet
for ``burst_quiet_s``.

Every record that does not become (part of) a turn gets one ``GuardDecision`` on
``wa.decisions`` (keyed by chat) with its reason, a :data:`schemas.DecisionReason`, and is
counted by reason (``count_decision``, the ``guard_decisions_total`` metric): a skipped
burst gets one per message. So each valid inbound record ends in a Turn's
``message_ids`` or in exactly one decision. Output before state, as everywhere: a crash
between the two decides the record again, with the same ``decision_id``.

Edits, revokes, reactions (``InboundMessage.event``). An edit of a message still waiting
in the open burst replaces its text in the coming turn (``edited_in_burst``); a revoke
takes it out (``revoked_in_burst``; a burst left empty makes no turn). An edit or revoke
of a message that is not waiting (answered already, or never to be answered) is only
recorded (``edited_after_answer``, ``revoked_after_answer``): the answer stands. A
reaction is recorded (``reaction``) and never answered. None of them moves the burst's
due time.

Bursts and timers. The open burst lives in the ``guard_state`` table, so a restart
loses nothing. Closing it needs a clock, but tables may only change in stream
context; so a timer task (outside stream context) only *produces* a tick record to
the co-partitioned ``guard.ticks`` topic, and this agent, consuming ticks and inbound
records in one stream, closes the burst when the tick matches its generation. After a
rebalance the timer rescans the table, so bursts of a crashed worker still close.

Event time. Every rule that needs a time reads the message's own: the gateway's
``received_at`` (precise; WhatsApp's ``t`` has whole seconds), never the worker's clock.
A burst is due ``burst_quiet_s`` after its last message was received; a message received
after that closes the burst before it is judged (its tick was late), the takeover pause
runs from the owner's message, rate windows are the minute and day of the turn's last
message, a message is too old when it was received ``ignore_older_than_s`` after it was
written. So a replay, which runs as fast as the LLM allows, makes the same turns as the
live run did. In a replay (``GuardConfig.replay``) nothing is scheduled by the clock: a
burst closes on the chat's next message or on a ``flush`` tick that the replay command
sends per chat once the guard has read all of its input.

Limits are checked here, before any LLM call: replies per chat per minute, per sender
per day and the account's daily token budget (both GlobalTables summed over partitions,
so a sender in several groups is counted once for the account) and the loop guard.
Over a limit there is no turn, an ``LLMCall`` with status ``skipped`` records the
decision, and at most one polite notice goes out per window.

The stage's rooms: :mod:`agents.guard.agent` the Faust agent, its burst timer task and its
rebalance hook (``register``); :mod:`agents.guard.decisions` the :class:`Guard`, what each record
becomes; :mod:`agents.guard.fates` what becomes of each WhatsApp message type;
:mod:`agents.guard.limits` the reply limits and their counters; :mod:`agents.guard.controls` the
operator's controls and profiles in ``chat_state``; :mod:`agents.guard.timers` when each open
burst is due; :mod:`agents.guard.config` what the guard is built with (its config, tables and
topics).
"""
