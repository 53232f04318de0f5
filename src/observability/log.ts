// tandem's own operational log (startup, drain, errors): JSON lines on
// stderr, so stdout stays the access log's by default.

import { pino } from 'pino';

export const log = pino({ base: null, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ dest: 2, sync: true }));
