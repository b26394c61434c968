mod email;

mod plugins;
