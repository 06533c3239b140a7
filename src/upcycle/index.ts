/** Upcycling dense models into MoE, the upcycle-or-scratch advisor, expert similarity. */
export * from './upcycle.js';
export * from './advise.js';
export * from './similarity.js';
