/** Training: corpus and data, trainer, optimizer, schedules, aux-loss controllers, checkpoints, runs. */
export * from './corpus.js';
export * from './data.js';
export * from './trainer.js';
export * from './optimizer.js';
export * from './schedule.js';
export * from './aux-controller.js';
export * from './checkpoint.js';
export * from './run.js';
