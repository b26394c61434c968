
mod email;

mod plugins;
