
mod email;

mod plugins;

mod export;
